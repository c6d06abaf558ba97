// Checkboxes for a set of names (a node's groups, a group's nodes), in a
// fieldset with a legend so the set has a label too.
import { useI18n } from '../i18n/index.jsx';
import { Checkbox } from './ui.jsx';

export default function NamePicker({ legend, names, value, onChange, emptyText, error }) {
  const { t } = useI18n();
  const toggle = (n, on) => onChange(on ? [...value, n] : value.filter((x) => x !== n));
  return (
    <fieldset className="space-y-1">
      <legend className="mb-1 text-sm font-medium text-slate-700">{legend}</legend>
      {names.length === 0 ? (
        <p className="text-sm text-slate-500">{emptyText || t('common.none')}</p>
      ) : (
        <div className="grid grid-cols-1 gap-1 sm:grid-cols-2">
          {names.map((n) => (
            <Checkbox key={n} label={n} checked={value.includes(n)} onChange={(on) => toggle(n, on)} />
          ))}
        </div>
      )}
      {error ? (
        <p role="alert" className="text-sm text-red-700">
          {error}
        </p>
      ) : null}
    </fieldset>
  );
}
