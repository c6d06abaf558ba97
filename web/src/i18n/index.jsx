// Dictionary-based i18n: every string the UI shows is a key in en.js and
// zh-CN.js (test/i18n.test.js checks both have the same keys and that no
// component holds a literal). The language follows the browser until the
// reader picks one; the pick is remembered.
import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import en from './en.js';
import zhCN from './zh-CN.js';

export const DICTS = { en, 'zh-CN': zhCN };
export const LANGS = ['en', 'zh-CN'];
const LANG_KEY = 'flowgate.lang';

// navigator.languages -> 'zh-CN' for any Chinese, else 'en'.
export function detectLang(languages) {
  for (const l of languages || []) {
    const s = String(l).toLowerCase();
    if (s.startsWith('zh')) return 'zh-CN';
    if (s.startsWith('en')) return 'en';
  }
  return 'en';
}

// "{n} nodes" with {n: 3} -> "3 nodes". A missing key shows itself, so a gap
// is visible (and the unit test fails first).
export function translate(dict, key, vars) {
  let s = dict[key];
  if (s === undefined) s = en[key];
  if (s === undefined) return key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined ? m : String(vars[k])));
  return s;
}

const Ctx = createContext(null);

function initialLang() {
  try {
    const saved = window.localStorage.getItem(LANG_KEY);
    if (saved && DICTS[saved]) return saved;
  } catch {
    /* storage off */
  }
  return detectLang(typeof navigator !== 'undefined' ? navigator.languages || [navigator.language] : []);
}

export function I18nProvider({ children }) {
  const [lang, setLangState] = useState(initialLang);
  useEffect(() => {
    document.documentElement.lang = lang;
    document.title = translate(DICTS[lang], 'app.title');
  }, [lang]);
  const setLang = useCallback((l) => {
    if (!DICTS[l]) return;
    try {
      window.localStorage.setItem(LANG_KEY, l);
    } catch {
      /* storage off */
    }
    setLangState(l);
  }, []);
  const value = useMemo(() => {
    const dict = DICTS[lang];
    return { lang, setLang, t: (key, vars) => translate(dict, key, vars) };
  }, [lang, setLang]);
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useI18n() {
  return useContext(Ctx);
}

export function useT() {
  return useContext(Ctx).t;
}
