// The Tunnels pages end to end: a real server, two real agents on this host
// (entry and exit; both reach each other on 127.0.0.1), Debian's chromium.
// A tunnel made with the form carries hashed bytes; a client-side mistake
// and a server refusal land beside their fields; the path view shows each
// node's state; deleting the tunnel closes its port.
// Run through tests/e2e/run.sh (it sets FLOWGATE_BIN and the working dir).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  SANITIZER_MARKERS,
  echoServer,
  echoThrough,
  freePort,
  sleep,
  startFlowgate,
  tryConnect,
  waitFor,
} from './lib.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const WEB = join(ROOT, 'web');
const ART = join(HERE, 'artifacts');
const SHOTS = join(ART, 'screenshots');
const RUN = join(ART, 'run-tunnels');
const BIN = process.env.FLOWGATE_BIN || join(ROOT, 'build-asan', 'flowgate');
const require = createRequire(join(WEB, 'package.json'));
const { chromium } = require('playwright-core');
const en = (await import(pathToFileURL(join(WEB, 'src', 'i18n', 'en.js')).href)).default;

const PASSWORD = 'e2e-admin-pass';
const N_BYTES = 1_000_000;
let server, echo, browser, page, base, token, entryPort, takenPort;
const procs = [];
const pageErrors = [];

async function api(method, path, body) {
  const r = await fetch(base + '/api/v1' + path, {
    method,
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

before(async () => {
  rmSync(RUN, { recursive: true, force: true });
  mkdirSync(RUN, { recursive: true });
  mkdirSync(SHOTS, { recursive: true });
  echo = await echoServer();
  const port = await freePort();
  entryPort = await freePort();
  takenPort = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = startFlowgate(
    'server',
    [BIN, 'server', '--listen', `127.0.0.1:${port}`, '--data', join(RUN, 'server'), '--web', join(WEB, 'dist')],
    { FLOWGATE_ADMIN_PASSWORD: PASSWORD },
    join(RUN, 'server.log'),
  );
  procs.push(server);
  await waitFor('the server to answer', async () => (await fetch(base + '/api/v1/me')).status === 401, 20000);
  const login = await fetch(base + '/api/v1/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  token = (await login.json()).token;
  // two nodes and their agents; a forward holding a port on the entry node
  for (const name of ['t-entry', 't-exit']) {
    const r = await api('POST', '/nodes', { name });
    assert.equal(r.status, 201);
    const dir = join(RUN, name);
    mkdirSync(dir, { recursive: true });
    const a = startFlowgate(
      name,
      [
        BIN,
        'agent',
        '--server',
        `ws://127.0.0.1:${port}`,
        '--token',
        r.body.token,
        '--state',
        dir,
        '--report-interval',
        '1s',
      ],
      {},
      join(RUN, name + '.log'),
    );
    procs.push(a);
  }
  await waitFor('both agents online with a fingerprint', async () => {
    const r = await api('GET', '/nodes');
    return r.body.nodes.every((n) => n.online && n.fingerprint);
  });
  const f = await api('POST', '/forwards', {
    name: 'holder',
    node: 't-entry',
    listen: `127.0.0.1:${takenPort}`,
    targets: [`127.0.0.1:${echo.port}`],
  });
  assert.equal(f.status, 201);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const c = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  page = await c.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) pageErrors.push('console: ' + m.text());
  });
  await page.goto(base + '/login');
  await page.getByLabel(en['login.username']).fill('admin');
  await page.getByLabel(en['login.password'], { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: en['login.submit'] }).click();
  await page.waitForURL(base + '/');
});

after(async () => {
  if (browser) await browser.close();
  if (echo) await echo.close();
  const problems = [];
  for (const p of procs.reverse()) {
    const r = await p.stop();
    const san = SANITIZER_MARKERS.filter((m) => r.log.includes(m));
    if (san.length) problems.push(`${p.name}: sanitizer report (${san}):\n${r.log.slice(-4000)}`);
    if (r.code !== 0)
      problems.push(`${p.name}: exit ${r.code} signal ${r.signal} after SIGTERM:\n${r.log.slice(-2000)}`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
  assert.deepEqual(pageErrors, [], 'errors in the page: ' + pageErrors.join('\n'));
});

// The field's error text (its Field wrapper holds label, control, error).
async function fieldError(label) {
  const input = page.getByLabel(label, { exact: true });
  await waitFor(`an error on ${label}`, async () => (await input.getAttribute('aria-invalid')) === 'true', 5000);
  const id = (await input.getAttribute('aria-describedby')).split(' ')[0];
  return page.locator(`[id="${id}"]`).innerText();
}

test('tunnels: the list starts empty and the nav leads there', async () => {
  await page.getByRole('link', { name: en['nav.tunnels'] }).click();
  await page.waitForURL(base + '/tunnels');
  await page.getByText(en['tun.empty']).waitFor();
});

test('tunnels: a mistake is shown beside its field; a port the server finds taken too; nothing is created', async () => {
  await page.getByRole('link', { name: en['tun.new'] }).click();
  await page.waitForURL(base + '/tunnels/new');
  await page.getByLabel(en['fwd.name'], { exact: true }).fill('e2e-tun');
  await page.getByLabel(en['tun.entry_node'], { exact: true }).selectOption('t-entry');
  await page.getByLabel(en['fwd.listen_addr'], { exact: true }).fill('127.0.0.1');
  await page.getByLabel(en['fwd.ports'], { exact: true }).fill(String(takenPort));
  await page.getByLabel(en['tun.exit_n'].replace('{n}', '1'), { exact: true }).selectOption('t-exit');
  await page.getByLabel(en['tun.target'], { exact: true }).fill('no-port-here');
  await page.getByRole('button', { name: en['tun.create'] }).click();
  assert.equal(await fieldError(en['tun.target']), en['v.target_port']);
  // fixed; but the entry port is a forward's: the server's 409 lands on the port field
  await page.getByLabel(en['tun.target'], { exact: true }).fill(`127.0.0.1:${echo.port}`);
  await page.getByRole('button', { name: en['tun.create'] }).click();
  const text = await fieldError(en['fwd.ports']);
  assert.match(text, /holder/);
  assert.equal((await api('GET', '/tunnels')).body.tunnels.length, 0);
});

test('tunnels: created with the form, the path turns to Running and bytes go through unchanged', async () => {
  await page.getByLabel(en['fwd.ports'], { exact: true }).fill(String(entryPort));
  await page.getByRole('button', { name: en['tun.create'] }).click();
  await page.waitForURL(base + '/tunnels');
  const row = page.locator('tr[data-tunnel="e2e-tun"]');
  await row.waitFor();
  await waitFor(
    'both nodes running the tunnel',
    async () => (await row.locator('li[data-state="ok"]').count()) === 2,
    30000,
  );
  // "Running" in the path means online with nothing wrong; the entry's
  // agent may still be a moment from listening (it builds its TLS client
  // context while it applies), so give it that moment
  await waitFor('the entry listens', () => tryConnect(entryPort), 5000, 100);
  const r = await echoThrough(entryPort, N_BYTES);
  r.socket.destroy();
  assert.equal(r.got, r.sent);
  // the tunnel's page: its path with each node's state and address
  await row.getByRole('link', { name: 'e2e-tun' }).click();
  await page.getByText(en['tun.sec_path']).waitFor();
  const path = page.getByRole('list', { name: en['tun.path_label'].replace('{name}', 'e2e-tun') });
  await path.locator('li[data-role="entry"]').getByText('t-entry').waitFor();
  await path.locator('li[data-role="exit"]').getByText('t-exit').waitFor();
  assert.equal(await path.locator('li[data-state="ok"]').count(), 2);
  // the hop's round trip as the agents measured it, and each node's links
  // (the page re-reads the path every 5 s)
  await waitFor('the hop RTT in the path', async () => (await path.getByTestId('hop-rtt').count()) === 1, 15000);
  assert.match(await path.getByTestId('hop-rtt').innerText(), /\d+(\.\d+)? (ms|s)$/);
  await waitFor('both nodes with links up', async () => (await path.getByTestId('node-links').count()) === 2, 15000);
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await sleep(150);
    await page.screenshot({ path: join(SHOTS, `tunnel-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  // no key anywhere on the page
  const html = await page.content();
  assert.ok(!/psk/i.test(html));
});

// Echoes 100,000 bytes through the tunnel's entry until they come back
// unchanged (new links may take a moment after a change).
async function waitBytesThrough(what) {
  await waitFor(
    what,
    async () => {
      const r = await echoThrough(entryPort, 100_000);
      r.socket.destroy();
      return r.got === r.sent;
    },
    30000,
    500,
  );
}

test('tunnels: edit (transport aead, no mux) keeps it carrying bytes', async () => {
  await page.getByLabel(en['tun.transport'], { exact: true }).selectOption('aead');
  await page.getByLabel(en['tun.mux'], { exact: true }).click();
  await page.getByRole('button', { name: en['common.save'] }).click();
  await page.waitForURL(base + '/tunnels');
  const t = (await api('GET', '/tunnels/e2e-tun')).body;
  assert.equal(t.transport, 'aead');
  assert.equal(t.mux, false);
  await waitBytesThrough('the new links carry bytes');
});

test('tunnels: the key is rotated from its page; the previous id stays accepted and bytes still go through', async () => {
  await page.locator('tr[data-tunnel="e2e-tun"]').getByRole('link', { name: 'e2e-tun' }).click();
  const card = page.getByTestId('tunnel-key');
  await card.waitFor();
  const before = (await api('GET', '/tunnels/e2e-tun')).body.key;
  assert.equal(before.previous_id, null);
  await page.getByRole('button', { name: en['tun.key_rotate'] }).click();
  await page.getByRole('dialog').getByRole('button', { name: en['tun.key_rotate'] }).click();
  await card.getByText(en['tun.key_previous']).waitFor();
  const after = (await api('GET', '/tunnels/e2e-tun')).body.key;
  assert.equal(after.id, before.id + 1);
  assert.equal(after.previous_id, before.id);
  assert.ok(after.previous_until > after.rotated);
  await waitBytesThrough('bytes through after the rotation');
  assert.ok(!/psk/i.test(await page.content()));
  await page.getByRole('navigation', { name: en['nav.breadcrumb'] }).getByRole('link').click();
  await page.waitForURL(base + '/tunnels');
});

test('tunnels: the node page shows how peers reach it and its tunnels; the address can be set', async () => {
  const exit = (await api('GET', '/nodes/t-exit')).body;
  await page.goto(base + '/nodes/' + exit.id);
  await page.getByTestId('node-fingerprint').waitFor();
  assert.equal(await page.getByTestId('node-fingerprint').innerText(), exit.fingerprint);
  assert.match(await page.getByTestId('node-address').innerText(), /127\.0\.0\.1/);
  await page.getByRole('link', { name: 'e2e-tun' }).waitFor();
  await page.getByRole('button', { name: en['ntun.set_address'] }).click();
  const input = page.getByRole('dialog').getByLabel(en['ntun.address'], { exact: true });
  await input.fill('not an address');
  await page.getByRole('dialog').getByRole('button', { name: en['common.save'] }).click();
  await page.getByRole('dialog').getByText(en['v.tun_address']).waitFor();
  await input.fill('127.0.0.1');
  await page.getByRole('dialog').getByRole('button', { name: en['common.save'] }).click();
  await waitFor('the address stored', async () => (await api('GET', '/nodes/t-exit')).body.address === '127.0.0.1');
  await page.goto(base + '/tunnels');
});

test('tunnels: an exit whose target name does not resolve is Degraded, with the name, in the list and the path', async () => {
  // .invalid never resolves (RFC 2606): the hosts file has no such name and
  // DNS answers no (or, with no name server, times out: a failure too)
  const port = await freePort();
  const made = await api('POST', '/tunnels', {
    name: 'e2e-nx',
    entry: { node: 't-entry', listen: `127.0.0.1:${port}` },
    exit: 't-exit',
    target: 'fg-e2e-target.invalid:9',
    transport: 'tcp',
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  await page.goto(base + '/tunnels');
  const row = page.locator('tr[data-tunnel="e2e-nx"]');
  await waitFor(
    'the exit degraded in the list',
    async () => (await row.locator('li[data-state="degraded"]').count()) === 1,
    40000,
    500,
  );
  assert.equal(await row.getByText(en['tstate.degraded'], { exact: true }).count(), 1);
  assert.match(await row.innerText(), /t-exit: 1 name unresolved: targets\[0\] "fg-e2e-target\.invalid"/);
  await row.getByRole('link', { name: 'e2e-nx' }).click();
  const path = page.getByRole('list', { name: en['tun.path_label'].replace('{name}', 'e2e-nx') });
  const exitNode = path.locator('li[data-role="exit"] li[data-state="degraded"]');
  await exitNode.waitFor();
  assert.match(await exitNode.getByTestId('node-detail').innerText(), /fg-e2e-target\.invalid.*cannot resolve/);
  assert.equal(await path.locator('li[data-role="entry"] li[data-state="ok"]').count(), 1);
  await page.screenshot({ path: join(SHOTS, 'tunnel-degraded.png'), fullPage: true });
  assert.equal((await api('DELETE', '/tunnels/e2e-nx')).status, 200);
  await page.goto(base + '/tunnels');
  await page.locator('tr[data-tunnel="e2e-tun"]').waitFor();
});

test('tunnels: delete; its port closes', async () => {
  await page.locator('tr[data-tunnel="e2e-tun"]').getByRole('link', { name: 'e2e-tun' }).click();
  await page.getByRole('button', { name: en['common.delete'] }).click();
  await page.getByRole('dialog').getByRole('button', { name: en['common.delete'] }).click();
  await page.waitForURL(base + '/tunnels');
  await page.getByText(en['tun.empty']).waitFor();
  await waitFor('the entry port closed', async () => !(await tryConnect(entryPort)), 15000);
});
