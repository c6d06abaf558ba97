import { describe, expect, it } from 'vitest';
import {
  agoParts,
  formatBytes,
  formatRate,
  formatRtt,
  revState,
  toUnix,
  RANGES,
  formatCount,
} from '../src/lib/format.js';

describe('formatBytes', () => {
  it('uses decimal units with three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1000)).toBe('1.00 kB');
    expect(formatBytes(1234567)).toBe('1.23 MB');
    expect(formatBytes(12345678)).toBe('12.3 MB');
    expect(formatBytes(123456789)).toBe('123 MB');
    expect(formatBytes(5e12)).toBe('5.00 TB');
  });
  it('shows a dash for missing values', () => {
    expect(formatBytes(null)).toBe('–');
    expect(formatBytes(undefined)).toBe('–');
    expect(formatBytes('x')).toBe('–');
  });
  it('rates add /s', () => {
    expect(formatRate(2500)).toBe('2.50 kB/s');
    expect(formatRate(0)).toBe('0 B/s');
  });
  it('counts follow the locale', () => {
    expect(formatCount(1234567, 'en')).toBe('1,234,567');
  });
});

describe('time', () => {
  it('agoParts picks the largest whole unit', () => {
    expect(agoParts(100, 105)).toEqual([5, 's']);
    expect(agoParts(0, 125)).toEqual([2, 'm']);
    expect(agoParts(0, 7300)).toEqual([2, 'h']);
    expect(agoParts(0, 3 * 86400 + 5)).toEqual([3, 'd']);
    expect(agoParts(200, 100)).toEqual([0, 's']); // clock skew: never negative
  });
  it('toUnix reads seconds, milliseconds and ISO strings', () => {
    expect(toUnix(1700000000)).toBe(1700000000);
    expect(toUnix(1700000000123)).toBe(1700000000);
    expect(toUnix('1700000000')).toBe(1700000000);
    expect(toUnix('2023-11-14T22:13:20Z')).toBe(1700000000);
    expect(toUnix(null)).toBe(null);
    expect(toUnix('garbage')).toBe(null);
  });
  it('every range has between 60 and 170 chart points', () => {
    for (const r of Object.values(RANGES)) {
      const n = r.seconds / r.step;
      expect(n).toBeGreaterThanOrEqual(60);
      expect(n).toBeLessThanOrEqual(170);
    }
  });
});

describe('revState', () => {
  it('failed wins over everything', () => {
    expect(revState({ desired_rev: 3, applied_rev: 3, errors: [{ error: 'x' }] })).toBe('failed');
  });
  it('lagging when applied is behind desired or missing', () => {
    expect(revState({ desired_rev: 4, applied_rev: 3, errors: [] })).toBe('lagging');
    expect(revState({ desired_rev: 1, applied_rev: null })).toBe('lagging');
  });
  it('synced and unknown', () => {
    expect(revState({ desired_rev: 4, applied_rev: 4 })).toBe('synced');
    expect(revState({ desired_rev: 0, applied_rev: null })).toBe('unknown');
  });
});

describe('formatRtt', () => {
  it('keeps three significant digits and switches to seconds at 1000 ms', () => {
    expect(formatRtt(0.4217)).toBe('0.42 ms');
    expect(formatRtt(2.345)).toBe('2.3 ms');
    expect(formatRtt(21.5)).toBe('22 ms');
    expect(formatRtt(20)).toBe('20 ms');
    expect(formatRtt(999.4)).toBe('999 ms');
    expect(formatRtt(1500)).toBe('1.50 s');
    expect(formatRtt(0)).toBe('0.00 ms');
  });
  it('shows a dash when nothing was measured', () => {
    expect(formatRtt(null)).toBe('–');
    expect(formatRtt(undefined)).toBe('–');
    expect(formatRtt(-1)).toBe('–');
    expect(formatRtt('x')).toBe('–');
  });
});
