// Live counters for the whole fleet, shared by every page through context.
// The server pushes its live view over a WebSocket once a second
// (/api/v1/live/ws); while that is not open (first paint, a proxy that
// drops upgrades, a server restart) the client polls GET /api/v1/live every
// 2 s and tries the socket again every 10 s. Rates come from the server
// (up_bps/down_bps); when it sends only byte totals the client derives a
// rate from two samples.
import { createContext, useContext, useEffect, useRef, useState } from 'react';
import { api, getToken } from './lib/api.js';

export const LIVE_INTERVAL_MS = 2000;
export const WS_RETRY_MS = 10000;
const EMPTY = { nodes: {}, forwards: {}, tunnels: {}, at: 0, error: null, mode: 'poll' };
const Ctx = createContext(EMPTY);

// Fills up_bps/down_bps from the previous sample when the server left them out.
export function withRates(prev, next, dtSeconds) {
  const out = {};
  for (const [id, f] of Object.entries(next || {})) {
    const p = prev?.[id];
    const r = { ...f };
    if (r.up_bps === undefined || r.up_bps === null)
      r.up_bps = p && dtSeconds > 0 ? Math.max(0, (f.bytes_up - p.bytes_up) / dtSeconds) : 0;
    if (r.down_bps === undefined || r.down_bps === null)
      r.down_bps = p && dtSeconds > 0 ? Math.max(0, (f.bytes_down - p.bytes_down) / dtSeconds) : 0;
    out[id] = r;
  }
  return out;
}

// ws:// or wss:// URL of the live socket for the page at loc. A browser's
// WebSocket cannot send headers, so the token rides in the query (the
// server accepts it on this path only).
export function liveSocketUrl(loc, token) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/api/v1/live/ws?access_token=${encodeURIComponent(token)}`;
}

export function LiveProvider({ children }) {
  const [live, setLive] = useState(EMPTY);
  const last = useRef(live);
  useEffect(() => {
    let stop = false;
    let pollTimer = null;
    let wsTimer = null;
    let ws = null;
    let wsOpen = false;

    const apply = (r, mode) => {
      const now = Date.now();
      const prev = last.current;
      const dt = prev.at ? (now - prev.at) / 1000 : 0;
      const next = {
        nodes: r?.nodes || {},
        forwards: withRates(prev.forwards, r?.forwards || {}, dt),
        tunnels: r?.tunnels || {},
        at: now,
        error: null,
        mode,
      };
      last.current = next;
      if (!stop) setLive(next);
    };

    const poll = async () => {
      if (stop || wsOpen) return;
      if (typeof document === 'undefined' || !document.hidden) {
        try {
          const r = await api.live();
          if (!wsOpen) apply(r, 'poll');
        } catch (e) {
          if (!stop) setLive((l) => ({ ...l, error: e }));
        }
      }
      if (!stop && !wsOpen) pollTimer = setTimeout(poll, LIVE_INTERVAL_MS);
    };

    const openSocket = () => {
      const tok = getToken();
      if (stop || !tok || typeof WebSocket === 'undefined') return;
      try {
        ws = new WebSocket(liveSocketUrl(window.location, tok));
      } catch {
        wsTimer = setTimeout(openSocket, WS_RETRY_MS);
        return;
      }
      ws.onopen = () => {
        wsOpen = true;
        clearTimeout(pollTimer);
      };
      ws.onmessage = (ev) => {
        try {
          apply(JSON.parse(ev.data), 'ws');
        } catch {
          /* a frame that is not the live view: ignore it */
        }
      };
      ws.onclose = () => {
        const was = wsOpen;
        wsOpen = false;
        ws = null;
        if (stop) return;
        if (was) poll();
        wsTimer = setTimeout(openSocket, WS_RETRY_MS);
      };
    };

    poll();
    openSocket();
    return () => {
      stop = true;
      clearTimeout(pollTimer);
      clearTimeout(wsTimer);
      if (ws) ws.close();
    };
  }, []);
  return <Ctx.Provider value={live}>{children}</Ctx.Provider>;
}

export function useLive() {
  return useContext(Ctx);
}
