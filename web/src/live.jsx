// Live counters for the whole fleet: GET /api/v1/live every 2 s while a
// page is visible (one request for every page, shared through context).
// Rates come from the server (up_bps/down_bps); when it sends only byte
// totals the client derives a rate from two samples.
import { createContext, useContext, useEffect, useRef, useState } from 'react';
import { api } from './lib/api.js';

export const LIVE_INTERVAL_MS = 2000;
const Ctx = createContext({ nodes: {}, forwards: {}, at: 0, error: null });

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

export function LiveProvider({ children }) {
  const [live, setLive] = useState({ nodes: {}, forwards: {}, at: 0, error: null });
  const last = useRef(live);
  useEffect(() => {
    let stop = false;
    let timer = null;
    const tick = async () => {
      if (stop) return;
      if (typeof document !== 'undefined' && document.hidden) {
        timer = setTimeout(tick, LIVE_INTERVAL_MS);
        return;
      }
      try {
        const r = await api.live();
        const now = Date.now();
        const prev = last.current;
        const dt = prev.at ? (now - prev.at) / 1000 : 0;
        const next = {
          nodes: r?.nodes || {},
          forwards: withRates(prev.forwards, r?.forwards || {}, dt),
          at: now,
          error: null,
        };
        last.current = next;
        if (!stop) setLive(next);
      } catch (e) {
        if (!stop) setLive((l) => ({ ...l, error: e }));
      }
      if (!stop) timer = setTimeout(tick, LIVE_INTERVAL_MS);
    };
    tick();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, []);
  return <Ctx.Provider value={live}>{children}</Ctx.Provider>;
}

export function useLive() {
  return useContext(Ctx);
}
