// The web UI end to end: a real server and a real agent, Debian's chromium.
// Run through tests/e2e/run.sh (it sets FLOWGATE_BIN and the working dir).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, rmSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  SANITIZER_MARKERS,
  agentArgv,
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
const RUN = join(ART, 'run');
const BIN = process.env.FLOWGATE_BIN || join(ROOT, 'build-asan', 'flowgate');
const require = createRequire(join(WEB, 'package.json'));
const { chromium } = require('playwright-core');
const en = (await import(pathToFileURL(join(WEB, 'src', 'i18n', 'en.js')).href)).default;
const zh = (await import(pathToFileURL(join(WEB, 'src', 'i18n', 'zh-CN.js')).href)).default;

const PASSWORD = 'e2e-admin-pass';
const NEW_PASSWORD = 'e2e-admin-pass-2';
const NODE = 'e2e-node';
const GROUP = 'edge';
const FWD = 'e2e-web';
const N_BYTES = 2_000_000;

let server, agent, echo, browser, ctx, page, base, fwdPort;
const procs = [];

const CHROME_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function newPage(locale) {
  const c = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    locale,
    acceptDownloads: true,
  });
  const p = await c.newPage();
  p.on('pageerror', (e) => pageErrors.push(`${locale}: ${e.message}`));
  p.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text()))
      pageErrors.push(`${locale}: console: ${m.text()}`);
  });
  return { c, p };
}
const pageErrors = [];

// Full-page screenshots at 1280 and 390 px wide.
async function shot(p, name) {
  for (const width of [1280, 390]) {
    await p.setViewportSize({ width, height: 900 });
    await sleep(150);
    await p.screenshot({
      path: join(SHOTS, `${name}-${width}.png`),
      fullPage: true,
    });
  }
  await p.setViewportSize({ width: 1280, height: 900 });
}

// The API as the page's own session sees it (for checks the page cannot show).
async function apiGet(path) {
  return page.evaluate(async (p) => {
    const r = await fetch('/api/v1' + p, {
      headers: {
        Authorization: 'Bearer ' + localStorage.getItem('flowgate.token'),
      },
    });
    return { status: r.status, body: await r.json() };
  }, path);
}

async function signIn(p, password) {
  await p.goto(base + '/login');
  await p.getByLabel(en['login.username']).fill('admin');
  await p.getByLabel(en['login.password'], { exact: true }).fill(password);
  await p.getByRole('button', { name: en['login.submit'] }).click();
  await p.waitForURL(base + '/');
}

before(async () => {
  rmSync(RUN, { recursive: true, force: true });
  mkdirSync(RUN, { recursive: true });
  mkdirSync(SHOTS, { recursive: true });
  echo = await echoServer();
  const port = await freePort();
  fwdPort = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = startFlowgate(
    'server',
    [BIN, 'server', '--listen', `127.0.0.1:${port}`, '--data', join(RUN, 'server'), '--web', join(WEB, 'dist')],
    { FLOWGATE_ADMIN_PASSWORD: PASSWORD },
    join(RUN, 'server.log'),
  );
  procs.push(server);
  mkdirSync(join(RUN, 'server'), { recursive: true });
  await waitFor('the server to answer', async () => (await fetch(base + '/api/v1/me')).status === 401, 20000);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    // playwright gives chromium a fresh --user-data-dir of its own each launch
    args: CHROME_ARGS,
  });
  ({ c: ctx, p: page } = await newPage('en-US'));
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

test('sign in: a wrong password is refused in words, the right one opens the overview', async () => {
  await page.goto(base + '/');
  await page.waitForURL(base + '/login');
  await shot(page, '01-login');
  await page.getByLabel(en['login.username']).fill('admin');
  await page.getByLabel(en['login.password'], { exact: true }).fill('not-the-password');
  await page.getByRole('button', { name: en['login.submit'] }).click();
  await page.getByText(en['login.bad']).waitFor();
  await page.getByLabel(en['login.password'], { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: en['login.submit'] }).click();
  await page.waitForURL(base + '/');
  await page.getByRole('heading', { name: en['overview.title'] }).waitFor();
  assert.equal(await page.getByTestId('nodes-online').textContent(), '0');
});

test('groups: create a group', async () => {
  await page.getByRole('link', { name: en['nav.groups'] }).click();
  await page.getByRole('button', { name: en['groups.new'] }).click();
  await page.getByLabel(en['groups.name']).fill(GROUP);
  await page.getByRole('button', { name: en['common.save'] }).click();
  await page.getByRole('cell', { name: GROUP, exact: true }).waitFor();
  const r = await apiGet('/groups');
  assert.deepEqual(
    r.body.groups.map((g) => g.name),
    [GROUP],
  );
});

test('nodes: add a node, enroll a real agent with the command the page shows', async () => {
  await page.getByRole('link', { name: en['nav.nodes'] }).click();
  await page.getByRole('button', { name: en['nodes.add'] }).click();
  await page.getByLabel(en['nodes.name']).fill(NODE);
  await page.getByRole('checkbox', { name: GROUP }).check();
  await page.getByRole('button', { name: en['nodes.add_submit'] }).click();
  const box = page.getByLabel(en['nodes.enroll_command']);
  await box.waitFor();
  const command = await box.inputValue();
  assert.match(command, /^flowgate agent --server ws:\/\/127\.0\.0\.1:\d+ --token fgn_\S+ --state \S+$/);
  await shot(page, '03-node-add');
  await page.getByRole('button', { name: en['common.done'] }).click();

  const argv = agentArgv(command, BIN, join(RUN, 'agent'));
  mkdirSync(join(RUN, 'agent'), { recursive: true });
  agent = startFlowgate('agent', argv, {}, join(RUN, 'agent.log'));
  procs.push(agent);

  // the list turns the node Online by itself (live feed, no reload)
  const row = page.getByRole('row', { name: new RegExp(NODE) });
  await row.getByText(en['status.online'], { exact: true }).waitFor({ timeout: 30000 });
  assert.ok(agent.alive(), 'agent exited');
  await row.getByText(GROUP).waitFor();
  await shot(page, '02-nodes');
});

test('node detail: status, version, revision', async () => {
  await page.getByRole('link', { name: NODE }).click();
  await page.getByRole('heading', { name: `Node ${NODE}` }).waitFor();
  await page.getByText(en['status.online'], { exact: true }).first().waitFor();
  await page.getByText(en['node.no_errors']).waitFor();
  // the hub writes what hello said within its 1 s store batch: the page
  // can show "online" (live view) a moment before the API has the version
  let r;
  await waitFor(
    'the agent version in the API',
    async () => {
      r = await apiGet(`/nodes/${NODE}`);
      return !!r.body.version;
    },
    5000,
  );
  assert.ok(r.body.version, 'agent reported a version');
  await page.getByText(r.body.version, { exact: true }).waitFor();
  await shot(page, '04-node-detail');
});

async function fillForward({ name, port, target }) {
  await page.getByLabel(en['fwd.name']).fill(name);
  await page.getByLabel(en['fwd.node'], { exact: true }).selectOption(NODE);
  // the address field starts at 0.0.0.0; the test stays on loopback
  assert.equal(await page.getByLabel(en['fwd.listen_addr']).inputValue(), '0.0.0.0');
  await page.getByLabel(en['fwd.listen_addr']).fill('127.0.0.1');
  await page.getByLabel(en['fwd.ports']).fill(port);
  await page.getByLabel(en['fwd.target_n'].replace('{n}', '1')).fill(target);
}

// The error text shown for a field, read through the field's
// aria-describedby (so it is the error *beside that field*).
async function fieldError(label) {
  const input = page.getByLabel(label, { exact: true });
  await waitFor(`an error on ${label}`, async () => (await input.getAttribute('aria-invalid')) === 'true', 5000);
  const ids = (await input.getAttribute('aria-describedby')).split(' ');
  return (await page.locator(`[id="${ids[0]}"]`).textContent()).trim();
}

test('forwards: a bad port is shown beside the port field and nothing is created', async () => {
  await page.getByRole('link', { name: en['nav.forwards'] }).click();
  await page.getByRole('link', { name: en['fwd.new'] }).click();
  await fillForward({
    name: FWD,
    port: '70000',
    target: `127.0.0.1:${echo.port}`,
  });
  await page.getByRole('button', { name: en['fwd.create'] }).click();
  assert.equal(await fieldError(en['fwd.ports']), en['v.port']);
  await shot(page, '06-forward-new-invalid');
  assert.deepEqual((await apiGet('/forwards')).body.forwards, []);
});

test('forwards: create one, bytes go through it, the counters on the page move', async () => {
  await page.getByLabel(en['fwd.ports']).fill(String(fwdPort));
  await page.getByRole('button', { name: en['fwd.create'] }).click();
  await page.waitForURL(base + '/forwards');
  const row = page.getByRole('row', { name: new RegExp(FWD) });
  await row.waitFor();
  assert.equal((await row.getByTestId('live-bytes').textContent()).trim(), '↓ 0 B · ↑ 0 B');

  // the counters arrive over the server's live WebSocket, not by polling
  await page.locator('[data-live-mode="on"]').waitFor({ timeout: 15000 });
  await waitFor('the agent to open the forward', () => tryConnect(fwdPort), 30000);
  const { socket, sent, got } = await echoThrough(fwdPort, N_BYTES);
  assert.equal(got, sent, 'bytes came back intact through the forward');
  // the row moves by itself: bytes both ways and one open connection
  await waitFor(
    'the page to show the bytes',
    async () => (await row.getByTestId('live-bytes').textContent()).trim() === '↓ 2.00 MB · ↑ 2.00 MB',
    30000,
  );
  await waitFor(
    'the page to show 1 connection',
    async () => (await row.getByTestId('live-conns').textContent()).trim() === '1',
    15000,
  );
  await shot(page, '05-forwards');
  socket.destroy();
  await waitFor(
    'the connection to close on the page',
    async () => (await row.getByTestId('live-conns').textContent()).trim() === '0',
    15000,
  );
  const r = await apiGet('/forwards');
  assert.equal(r.body.forwards.length, 1);
  assert.equal(r.body.forwards[0].listen, `127.0.0.1:${fwdPort}`);
  assert.deepEqual(r.body.forwards[0].targets, [`127.0.0.1:${echo.port}`]);

  // the node page counts the same forward
  await page.goto(base + '/nodes');
  await page.getByRole('link', { name: NODE }).click();
  await page
    .getByRole('row', { name: new RegExp(FWD) })
    .getByText('↓ 2.00 MB · ↑ 2.00 MB')
    .waitFor({ timeout: 15000 });
});

test('forwards: a clash the server finds is shown beside the port field', async () => {
  await page.goto(base + '/forwards/new');
  await fillForward({
    name: 'e2e-dup',
    port: String(fwdPort),
    target: `127.0.0.1:${echo.port}`,
  });
  await page.getByRole('button', { name: en['fwd.create'] }).click();
  const msg = await fieldError(en['fwd.ports']);
  assert.match(msg, /^Already in use: .*already used by forward "e2e-web"/);
  await shot(page, '07-forward-conflict');
  assert.equal((await apiGet('/forwards')).body.forwards.length, 1);
});

test('forwards: edit limits; a bad port on edit changes nothing', async () => {
  await page.goto(base + '/forwards');
  await page.getByRole('link', { name: FWD }).click();
  await page.getByRole('heading', { name: `Forward ${FWD}` }).waitFor();
  await page.getByLabel(en['fwd.rate_down']).fill('10MB/s');
  await page.getByLabel(en['fwd.max_conns'], { exact: true }).fill('100');
  await page.getByLabel(en['fwd.proxy_protocol']).selectOption('');
  await page.getByLabel(en['fwd.balance']).selectOption('least-conn');
  // the Advanced section opens by keyboard and holds the rest of the model
  await page.getByRole('button', { name: en['fwd.sec_advanced'] }).focus();
  await page.keyboard.press('Enter');
  await page.getByLabel(en['fwd.idle_timeout']).fill('600s');
  await page.getByRole('checkbox', { name: en['fwd.health_check'] }).check();
  await page.getByLabel(en['fwd.hc_interval']).fill('2s');
  await page.getByLabel(en['fwd.hc_fall']).fill('3');
  await page.getByRole('button', { name: en['common.save'] }).click();
  await page.waitForURL(base + '/forwards');
  let f = (await apiGet('/forwards')).body.forwards[0];
  assert.equal(f.max_conns, 100);
  assert.equal(f.balance, 'least-conn');
  assert.ok(f.rate_down === '10MB/s' || f.rate_down === 10000000, `rate_down ${f.rate_down}`);
  assert.equal(f.idle_timeout, '600s');
  assert.deepEqual(f.health_check, { interval: '2s', fall: 3 });
  assert.equal(f.burst, undefined);

  await page.getByRole('link', { name: FWD }).click();
  await page.getByLabel(en['fwd.max_conns'], { exact: true }).waitFor();
  assert.equal(await page.getByLabel(en['fwd.max_conns'], { exact: true }).inputValue(), '100');
  assert.equal(await page.getByLabel(en['fwd.idle_timeout']).inputValue(), '600s');
  await page.getByLabel(en['fwd.ports']).fill('0');
  await page.getByRole('button', { name: en['common.save'] }).click();
  assert.equal(await fieldError(en['fwd.ports']), en['v.port']);
  await shot(page, '08-forward-edit');
  f = (await apiGet('/forwards')).body.forwards[0];
  assert.equal(f.listen, `127.0.0.1:${fwdPort}`);
  // still forwarding after the limits changed
  const { socket, sent, got } = await echoThrough(fwdPort, 1000);
  socket.destroy();
  assert.equal(got, sent);
});

test('traffic: the forward chart totals its bytes; CSV export', async () => {
  const id = String((await apiGet('/forwards')).body.forwards[0].id);
  // series come from the counters the agent reports every second
  const to = () => Math.floor(Date.now() / 1000) + 60;
  await waitFor(
    'the series to count every byte',
    async () =>
      (await apiGet(`/forwards/${id}/stats?from=${to() - 3600}&to=${to()}&step=60`)).body.total.bytes_up ===
      N_BYTES + 1000,
    30000,
    1000,
  );
  await page.goto(base + '/traffic');
  await page.getByLabel(en['traffic.scope']).selectOption('forwards');
  await page.getByRole('radio', { name: en['range.1h_long'] }).click();
  await page.getByLabel(en['traffic.object_forwards']).selectOption(id);
  await waitFor(
    'the page total',
    async () => (await page.getByTestId('total-up').textContent()).trim() === '2.00 MB',
    10000,
  );
  assert.equal((await page.getByTestId('total-down').textContent()).trim(), '2.00 MB');
  await shot(page, '09-traffic');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: en['traffic.export_csv'] }).click(),
  ]);
  const csv = readFileSync(await download.path(), 'utf8')
    .trim()
    .split('\n');
  assert.equal(csv[0], 't,bytes_up,bytes_down,conns');
  const up = csv.slice(1).reduce((s, l) => s + Number(l.split(',')[1]), 0);
  assert.equal(up, N_BYTES + 1000);
  assert.match(download.suggestedFilename(), /^flowgate-forwards-e2e-web-1h\.csv$/);
});

test('overview: nodes online and traffic', async () => {
  await page.getByRole('link', { name: en['nav.overview'] }).click();
  await waitFor('1 node online', async () => (await page.getByTestId('nodes-online').textContent()) === '1', 15000);
  assert.equal(await page.getByTestId('nodes-offline').textContent(), '0');
  await page.getByText(en['overview.all_good']).waitFor();
  await shot(page, '10-overview');
  await page.goto(base + '/groups');
  await page.getByRole('cell', { name: NODE }).waitFor();
  await shot(page, '11-groups');
});

test('forwards: filter by node and by group', async () => {
  await page.goto(base + '/forwards');
  await page.getByLabel(en['fwd.filter']).selectOption(`node:${NODE}`);
  await page.waitForURL(base + `/forwards?node=${NODE}`);
  await page.getByRole('link', { name: FWD }).waitFor();
  // the forward targets the node, not the group
  await page.getByLabel(en['fwd.filter']).selectOption(`group:${GROUP}`);
  await page.waitForURL(base + `/forwards?group=${GROUP}`);
  await page.getByText(en['fwd.empty']).waitFor();
  await page.getByLabel(en['fwd.filter']).selectOption('');
  await page.getByRole('link', { name: FWD }).waitFor();
});

test('apply errors: a port taken on the node is explained in plain words', async () => {
  // the echo peer holds its port, so the agent cannot bind it
  await page.goto(base + '/forwards/new');
  await fillForward({
    name: 'e2e-busy',
    port: String(echo.port),
    target: `127.0.0.1:${fwdPort}`,
  });
  await page.getByRole('button', { name: en['fwd.create'] }).click();
  await page.waitForURL(base + '/forwards');
  await page.getByRole('link', { name: en['nav.overview'] }).click();
  const item = page.getByRole('listitem').filter({ hasText: NODE });
  await item.getByText(en['rev.failed']).waitFor({ timeout: 20000 });
  await item.getByRole('link', { name: NODE }).click();
  const errors = page.getByTestId('apply-errors');
  await errors
    .getByText(en['node.error_line'].replace('{kind}', en['kind.forward']).replace('{name}', 'e2e-busy'))
    .waitFor();
  await errors.getByText(en['applyerr.addrinuse']).waitFor();
  await shot(page, '13-node-apply-error');
  // removing the forward clears it
  const busy = (await apiGet('/forwards')).body.forwards.find((f) => f.name === 'e2e-busy');
  await page.goto(base + `/forwards/${busy.id}`);
  await page.getByRole('button', { name: en['common.delete'] }).click();
  await page.getByRole('dialog').getByRole('button', { name: en['common.delete'] }).click();
  await page.waitForURL(base + '/forwards');
  await page.getByRole('link', { name: en['nav.overview'] }).click();
  await page.getByText(en['overview.all_good']).waitFor({ timeout: 20000 });
});

test('forwards: delete one; its port closes', async () => {
  await page.goto(base + '/forwards');
  await page.getByRole('link', { name: FWD }).click();
  await page.getByRole('button', { name: en['common.delete'] }).click();
  await page.getByRole('dialog').getByRole('button', { name: en['common.delete'] }).click();
  await page.waitForURL(base + '/forwards');
  await page.getByText(en['fwd.empty']).waitFor();
  assert.deepEqual((await apiGet('/forwards')).body.forwards, []);
  await waitFor('the port to close', async () => !(await tryConnect(fwdPort)), 20000);
});

test('firewall: a policy from the editor, its error under the rules, the node view, iptables import', async () => {
  // the policy targets no node: this test never changes the host's ruleset
  await page.getByRole('link', { name: en['nav.firewall'] }).click();
  await page.getByRole('heading', { name: en['fw.title'] }).waitFor();
  await page.getByText(en['fw.empty']).waitFor();
  await page.getByRole('button', { name: en['fw.new'] }).click();
  await page.getByLabel(en['fw.name'], { exact: true }).fill('web-in');
  await page.getByLabel(en['fw.priority'], { exact: true }).fill('10');
  const rules = page.getByLabel(en['fw.rules'], { exact: true });
  await rules.fill('[{"chain": "input", "proto": "tcp", "dport": 70000, "action": "drop"}]');
  await page.getByRole('button', { name: en['common.save'] }).click();
  // the server's parser names the rule; the page puts it under the rules box
  assert.match(await fieldError(en['fw.rules']), /rules\[0\]\.dport/);
  assert.deepEqual((await apiGet('/policies')).body.policies, []);
  await rules.fill('[{"chain": "input", "proto": "tcp", "dport": 9, "action": "drop", "counter": true}]');
  await page.getByRole('button', { name: en['common.save'] }).click();
  await page.getByRole('cell', { name: 'web-in' }).waitFor();
  const pol = (await apiGet('/policies')).body.policies;
  assert.equal(pol.length, 1);
  assert.equal(pol[0].priority, 10);
  assert.deepEqual(pol[0].rules, [{ chain: 'input', proto: 'tcp', dport: 9, action: 'drop', counter: true }]);
  // the node's view: what it runs and the exact text it gets (no policy targets it)
  await page.getByLabel(en['fw.node_pick']).selectOption(NODE);
  await page.getByTestId('fw-preview').waitFor();
  // nothing targets it and it has no kernel forward: it keeps no table
  assert.equal(await page.getByTestId('fw-preview').textContent(), en['fw.preview_none']);
  await page.getByText(en['fw.in_sync']).waitFor();
  await shot(page, '13-firewall');
  // iptables-save -> a draft in the editor
  await page.getByRole('button', { name: en['fw.import'] }).click();
  await page
    .getByLabel(en['fw.import_text'], { exact: true })
    .fill('*filter\n-A INPUT -p tcp --dport 23 -j DROP\nCOMMIT\n');
  await page.getByRole('button', { name: en['fw.import_convert'] }).click();
  await page.getByTestId('import-result').waitFor();
  await page.getByRole('button', { name: en['fw.import_use'] }).click();
  assert.match(await page.getByLabel(en['fw.rules'], { exact: true }).inputValue(), /23/);
  await page.getByRole('button', { name: en['common.cancel'] }).click();
  // delete it
  await page
    .getByRole('row', { name: /web-in/ })
    .getByRole('button', { name: en['common.delete'] })
    .click();
  await page.getByRole('dialog').getByRole('button', { name: en['common.delete'] }).click();
  await page.getByText(en['fw.empty']).waitFor();
});

test('account: change password, sign out, sign in with the new one', async () => {
  await page.getByRole('button', { name: /Account menu/ }).click();
  await page.getByRole('menuitem', { name: en['user.change_password'] }).click();
  await page.getByLabel(en['account.old']).fill('wrong-old-password');
  await page.getByLabel(en['account.new'], { exact: true }).fill(NEW_PASSWORD);
  await page.getByLabel(en['account.confirm']).fill(NEW_PASSWORD);
  await page.getByRole('button', { name: en['account.submit'] }).click();
  assert.equal(await fieldError(en['account.old']), en['account.wrong_old']);
  await page.getByLabel(en['account.old']).fill(PASSWORD);
  await page.getByRole('button', { name: en['account.submit'] }).click();
  await page.getByText(en['account.changed']).waitFor();
  await shot(page, '12-account');
  // sign out: the token stops working and the app goes back to sign-in
  const tok = await page.evaluate(() => localStorage.getItem('flowgate.token'));
  await page.getByRole('button', { name: /Account menu/ }).click();
  await page.getByRole('menuitem', { name: en['user.sign_out'] }).click();
  await page.waitForURL(base + '/login');
  const r = await fetch(base + '/api/v1/me', {
    headers: { Authorization: 'Bearer ' + tok },
  });
  assert.equal(r.status, 401);
  await signIn(page, NEW_PASSWORD);
});

test('keyboard: sign in and reach a page with Tab and Enter only', async () => {
  const { c, p } = await newPage('en-US');
  await p.goto(base + '/login');
  await p.getByLabel(en['login.username']).focus();
  await p.keyboard.press('Control+A');
  await p.keyboard.type('admin');
  await p.keyboard.press('Tab');
  await p.keyboard.type(NEW_PASSWORD);
  await p.keyboard.press('Enter');
  await p.waitForURL(base + '/');
  // the overview has replaced the login form (a Tab pressed while React
  // swaps the pages lands on the body)
  await p.getByRole('heading', { level: 1 }).waitFor();
  await sleep(200);
  // Tab from the top: skip link first, then the navigation
  await p.keyboard.press('Tab');
  assert.equal(await p.evaluate(() => document.activeElement.textContent), en['nav.skip']);
  for (let i = 0; i < 10; i++) {
    await p.keyboard.press('Tab');
    if ((await p.evaluate(() => document.activeElement.textContent)) === en['nav.nodes']) break;
  }
  await p.keyboard.press('Enter');
  await p.waitForURL(base + '/nodes');
  // every form control on the pages has a label (accessible name)
  for (const path of ['/nodes', '/forwards/new', '/traffic', '/account', '/groups', '/firewall']) {
    await p.goto(base + path);
    await p.getByRole('heading', { level: 1 }).waitFor();
    await sleep(300);
    const unlabeled = await p.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea, button')]
        .filter((el) => {
          // Radix mirrors a checkbox into a hidden native input for forms
          if (el.getAttribute('aria-hidden') === 'true') return false;
          const id = el.id;
          const byFor = id && document.querySelector(`label[for="${CSS.escape(id)}"]`);
          return !(
            el.getAttribute('aria-label') ||
            el.getAttribute('aria-labelledby') ||
            byFor ||
            el.closest('label') ||
            (el.tagName === 'BUTTON' && el.textContent.trim())
          );
        })
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    assert.deepEqual(unlabeled, [], `controls without a label on ${path}`);
  }
  await c.close();
});

test('Chinese: every page in zh-CN with no English left, screenshots of each', async () => {
  const { c, p } = await newPage('zh-CN');
  await p.goto(base + '/login');
  await p.getByLabel(zh['login.username']).fill('admin');
  await p.getByLabel(zh['login.password'], { exact: true }).fill(NEW_PASSWORD);
  await p.getByRole('button', { name: zh['login.submit'] }).click();
  await p.waitForURL(base + '/');
  // English strings long enough to be unambiguous, that differ in Chinese
  const english = Object.keys(en)
    .filter((k) => en[k] !== zh[k] && !en[k].includes('{') && en[k].length >= 5)
    .map((k) => en[k]);
  const nodeId = (
    await (
      await fetch(base + '/api/v1/nodes', {
        headers: {
          Authorization: 'Bearer ' + (await p.evaluate(() => localStorage.getItem('flowgate.token'))),
        },
      })
    ).json()
  ).nodes[0].id;
  const pages = [
    ['overview', '/'],
    ['nodes', '/nodes'],
    ['node-detail', `/nodes/${nodeId}`],
    ['groups', '/groups'],
    ['forwards', '/forwards'],
    ['forward-new', '/forwards/new'],
    ['traffic', '/traffic'],
    ['firewall', '/firewall'],
    ['account', '/account'],
  ];
  for (const [name, path] of pages) {
    await p.goto(base + path);
    await p.getByRole('heading', { level: 1 }).waitFor();
    await sleep(500);
    const text = await p.evaluate(() => document.body.innerText);
    const left = english.filter((s) => text.includes(s));
    assert.deepEqual(left, [], `English text on ${path} in zh-CN`);
    assert.equal(await p.evaluate(() => document.documentElement.lang), 'zh-CN');
    await shot(p, `zh-${name}`);
  }
  // switching the language by hand wins over the browser's
  await p.getByLabel(zh['lang.label']).selectOption('en');
  await p.getByRole('heading', { name: en['account.title'] }).waitFor();
  await p.reload();
  await p.getByRole('heading', { name: en['account.title'] }).waitFor();
  await c.close();
});

test('roles: a viewer sees everything and no button to change it', async () => {
  const r = await page.evaluate(async () => {
    const res = await fetch('/api/v1/users', {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + localStorage.getItem('flowgate.token') },
      body: JSON.stringify({ username: 'watcher', password: 'watcher-pass-1', role: 'viewer' }),
    });
    return res.status;
  });
  assert.equal(r, 201);
  const { c, p } = await newPage('en-US');
  await p.goto(base + '/login');
  await p.getByLabel(en['login.username']).fill('watcher');
  await p.getByLabel(en['login.password'], { exact: true }).fill('watcher-pass-1');
  await p.getByRole('button', { name: en['login.submit'] }).click();
  await p.waitForURL(base + '/');
  await p.goto(base + '/nodes');
  await p.getByRole('link', { name: NODE }).waitFor();
  assert.equal(await p.getByRole('button', { name: en['nodes.add'] }).count(), 0);
  await p.getByRole('link', { name: NODE }).click();
  await p.getByRole('heading', { name: `Node ${NODE}` }).waitFor();
  assert.equal(await p.getByRole('button', { name: en['node.remove'] }).count(), 0);
  await p.goto(base + '/groups');
  await p.getByRole('cell', { name: GROUP, exact: true }).waitFor();
  assert.equal(await p.getByRole('button', { name: en['groups.new'] }).count(), 0);
  await p.goto(base + '/forwards');
  await p.getByRole('heading', { name: en['fwd.title'] }).waitFor();
  assert.equal(await p.getByRole('link', { name: en['fwd.new'] }).count(), 0);
  await c.close();
});

test('nodes: rename, set groups, remove', async () => {
  await page.goto(base + '/nodes');
  await page.getByRole('link', { name: NODE }).click();
  await page.getByRole('button', { name: en['node.rename'] }).click();
  await page.getByRole('dialog').getByLabel(en['nodes.name']).fill('e2e-renamed');
  await page.getByRole('dialog').getByRole('button', { name: en['common.save'] }).click();
  await page.getByRole('heading', { name: 'Node e2e-renamed' }).waitFor();
  await page.getByRole('button', { name: en['node.set_groups'] }).click();
  await page.getByRole('dialog').getByRole('checkbox', { name: GROUP }).uncheck();
  await page.getByRole('dialog').getByRole('button', { name: en['common.save'] }).click();
  await waitFor(
    'the node to leave the group',
    async () => (await apiGet('/nodes/e2e-renamed')).body.groups.length === 0,
  );
  assert.deepEqual((await apiGet('/groups')).body.groups[0].nodes, []);
  await page.getByRole('button', { name: en['node.remove'] }).click();
  await page.getByRole('dialog').getByRole('button', { name: en['node.remove'] }).click();
  await page.waitForURL(base + '/nodes');
  await page.getByText(en['nodes.empty']).waitFor();
  assert.deepEqual((await apiGet('/nodes')).body.nodes, []);
});
