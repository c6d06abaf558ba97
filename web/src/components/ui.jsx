// Small building blocks on Radix primitives and Tailwind. Every control
// gets a visible <label> (Field) or an aria-label; focus rings are visible.
import { forwardRef, useId, useState } from 'react';
import * as RLabel from '@radix-ui/react-label';
import * as RDialog from '@radix-ui/react-dialog';
import * as RCheckbox from '@radix-ui/react-checkbox';
import { useT } from '../i18n/index.jsx';

const cx = (...a) => a.filter(Boolean).join(' ');
const focus = 'focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-500 focus-visible:ring-offset-1';

export function Button({ variant = 'primary', size = 'md', className, ...props }) {
  const v = {
    primary: 'bg-sky-700 text-white hover:bg-sky-800 disabled:bg-slate-400',
    secondary: 'bg-white text-slate-800 border border-slate-300 hover:bg-slate-100 disabled:text-slate-400',
    danger: 'bg-red-700 text-white hover:bg-red-800 disabled:bg-slate-400',
    ghost: 'text-sky-800 hover:bg-sky-50',
  }[variant];
  const s = size === 'sm' ? 'px-2 py-1 text-sm' : 'px-3 py-2 text-sm';
  return <button type="button" className={cx('rounded-md font-medium', s, v, focus, className)} {...props} />;
}

export const Input = forwardRef(function Input({ className, invalid, ...props }, ref) {
  return (
    <input
      ref={ref}
      aria-invalid={invalid ? 'true' : undefined}
      className={cx(
        'block w-full rounded-md border bg-white px-2.5 py-1.5 text-sm',
        invalid ? 'border-red-600' : 'border-slate-300',
        focus,
        className,
      )}
      {...props}
    />
  );
});

export const Select = forwardRef(function Select({ className, invalid, children, ...props }, ref) {
  return (
    <select
      ref={ref}
      aria-invalid={invalid ? 'true' : undefined}
      className={cx(
        'block w-full rounded-md border bg-white px-2 py-1.5 text-sm',
        invalid ? 'border-red-600' : 'border-slate-300',
        focus,
        className,
      )}
      {...props}
    >
      {children}
    </select>
  );
});

// A labelled control with its hint and its error right below it. The
// control is the single child; Field hands it id, aria-describedby and
// invalid so a screen reader reads the error with the field.
export function Field({ label, error, hint, children, className }) {
  const id = useId();
  const errId = id + '-err';
  const hintId = id + '-hint';
  const describedBy = [error ? errId : null, hint ? hintId : null].filter(Boolean).join(' ') || undefined;
  const child =
    typeof children === 'function' ? children({ id, 'aria-describedby': describedBy, invalid: !!error }) : children;
  return (
    <div className={cx('space-y-1', className)}>
      <RLabel.Root htmlFor={id} className="block text-sm font-medium text-slate-700">
        {label}
      </RLabel.Root>
      {child}
      {hint && !error ? (
        <p id={hintId} className="text-xs text-slate-500">
          {hint}
        </p>
      ) : null}
      {error ? (
        <p id={errId} role="alert" className="text-sm text-red-700" data-field-error="">
          {error}
        </p>
      ) : null}
    </div>
  );
}

export function Checkbox({ label, checked, onChange, id: idIn }) {
  const gen = useId();
  const id = idIn || gen;
  return (
    <div className="flex items-center gap-2">
      <RCheckbox.Root
        id={id}
        checked={checked}
        onCheckedChange={(v) => onChange(v === true)}
        className={cx('flex h-5 w-5 items-center justify-center rounded border border-slate-400 bg-white', focus)}
      >
        <RCheckbox.Indicator className="text-sky-700">
          <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true">
            <path d="M3 8l3 3 7-7" stroke="currentColor" strokeWidth="2" fill="none" />
          </svg>
        </RCheckbox.Indicator>
      </RCheckbox.Root>
      <RLabel.Root htmlFor={id} className="text-sm text-slate-800">
        {label}
      </RLabel.Root>
    </div>
  );
}

export function Card({ title, actions, children, className }) {
  return (
    <section className={cx('rounded-lg border border-slate-200 bg-white p-4 shadow-sm', className)}>
      {title || actions ? (
        <div className="mb-3 flex flex-wrap items-center justify-between gap-2">
          {title ? <h2 className="text-base font-semibold text-slate-800">{title}</h2> : <span />}
          {actions ? <div className="flex flex-wrap gap-2">{actions}</div> : null}
        </div>
      ) : null}
      {children}
    </section>
  );
}

export function Badge({ tone = 'slate', children }) {
  const t = {
    green: 'bg-green-100 text-green-900',
    red: 'bg-red-100 text-red-900',
    amber: 'bg-amber-100 text-amber-900',
    orange: 'bg-orange-100 text-orange-900',
    slate: 'bg-slate-100 text-slate-800',
    sky: 'bg-sky-100 text-sky-900',
  }[tone];
  return <span className={cx('inline-block rounded px-1.5 py-0.5 text-xs font-medium', t)}>{children}</span>;
}

export function ErrorBanner({ error }) {
  const t = useT();
  if (!error) return null;
  const msg = typeof error === 'string' ? error : apiErrorText(t, error);
  return (
    <div role="alert" className="rounded-md border border-red-300 bg-red-50 px-3 py-2 text-sm text-red-800">
      {msg}
    </div>
  );
}

// An API error in words: the server's message when it sent one, else a
// sentence for the status.
export function apiErrorText(t, err) {
  if (!err) return '';
  if (err.code === 'network') return t('err.network');
  if (err.message && err.status) return err.message;
  if (err.status === 401) return t('err.unauthorized');
  if (err.status === 403) return t('err.forbidden');
  if (err.status === 404) return t('err.not_found');
  if (err.status === 409) return t('err.conflict');
  return err.message || t('err.generic');
}

export function Dialog({ open, onOpenChange, title, description, children }) {
  return (
    <RDialog.Root open={open} onOpenChange={onOpenChange}>
      <RDialog.Portal>
        <RDialog.Overlay className="fixed inset-0 bg-slate-900/40" />
        <RDialog.Content className="fixed left-1/2 top-1/2 max-h-[90vh] w-[calc(100vw-1.5rem)] max-w-lg -translate-x-1/2 -translate-y-1/2 overflow-y-auto rounded-lg bg-white p-5 shadow-xl focus:outline-none">
          <RDialog.Title className="mb-1 text-lg font-semibold">{title}</RDialog.Title>
          {description ? (
            <RDialog.Description className="mb-3 text-sm text-slate-600">{description}</RDialog.Description>
          ) : (
            <RDialog.Description className="sr-only">{title}</RDialog.Description>
          )}
          {children}
        </RDialog.Content>
      </RDialog.Portal>
    </RDialog.Root>
  );
}

// Asks before a destructive action.
export function ConfirmDialog({ open, onOpenChange, title, description, confirmLabel, onConfirm }) {
  const t = useT();
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState(null);
  return (
    <Dialog open={open} onOpenChange={onOpenChange} title={title} description={description}>
      <ErrorBanner error={err} />
      <div className="mt-4 flex justify-end gap-2">
        <Button variant="secondary" onClick={() => onOpenChange(false)}>
          {t('common.cancel')}
        </Button>
        <Button
          variant="danger"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            setErr(null);
            try {
              await onConfirm();
              onOpenChange(false);
            } catch (e) {
              setErr(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          {confirmLabel}
        </Button>
      </div>
    </Dialog>
  );
}

// A read-only value (the enroll command) with a copy button.
export function CopyField({ label, value }) {
  const t = useT();
  const [copied, setCopied] = useState(false);
  const id = useId();
  return (
    <div className="space-y-1">
      <RLabel.Root htmlFor={id} className="block text-sm font-medium text-slate-700">
        {label}
      </RLabel.Root>
      <div className="flex flex-col gap-2 sm:flex-row">
        <textarea
          id={id}
          readOnly
          rows={4}
          value={value}
          onFocus={(e) => e.target.select()}
          className={cx('block w-full rounded-md border border-slate-300 bg-slate-50 p-2 font-mono text-xs', focus)}
          data-testid="enroll-command"
        />
        <Button
          variant="secondary"
          className="self-start"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(value);
              setCopied(true);
              setTimeout(() => setCopied(false), 2000);
            } catch {
              setCopied(false);
            }
          }}
        >
          {copied ? t('common.copied') : t('common.copy')}
        </Button>
      </div>
    </div>
  );
}

export function PageHeader({ title, actions }) {
  return (
    <div className="mb-4 flex flex-wrap items-center justify-between gap-2">
      <h1 className="text-xl font-semibold text-slate-900">{title}</h1>
      {actions ? <div className="flex flex-wrap gap-2">{actions}</div> : null}
    </div>
  );
}

export function Loading() {
  const t = useT();
  return <p className="text-sm text-slate-500">{t('common.loading')}</p>;
}

export function Empty({ children }) {
  return <p className="py-4 text-sm text-slate-500">{children}</p>;
}

export const tableCls = 'rtable w-full text-left text-sm';
export const thCls = 'border-b border-slate-200 px-2 py-2 font-medium text-slate-600';
export const tdCls = 'border-b border-slate-100 px-2 py-2 align-top';
export { cx, focus };
