import { LANGS, useI18n } from '../i18n/index.jsx';
import { cx, focus } from './ui.jsx';

export default function LangSwitch({ className }) {
  const { lang, setLang, t } = useI18n();
  return (
    <select
      aria-label={t('lang.label')}
      value={lang}
      onChange={(e) => setLang(e.target.value)}
      className={cx('rounded-md border border-slate-300 bg-white px-2 py-1 text-sm text-slate-800', focus, className)}
    >
      {LANGS.map((l) => (
        <option key={l} value={l}>
          {t('lang.' + l)}
        </option>
      ))}
    </select>
  );
}
