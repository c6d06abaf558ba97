import { useId } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import * as RLabel from '@radix-ui/react-label';
import { useI18n } from '../i18n/index.jsx';
import { useLive } from '../live.jsx';
import { useCanWrite } from '../auth.jsx';
import { api } from '../lib/api.js';
import { useInterval, useResource } from '../lib/hooks.js';
import { cx, Card, Empty, ErrorBanner, focus, Loading, PageHeader, Select } from '../components/ui.jsx';
import ForwardTable from '../components/ForwardTable.jsx';

export default function Forwards() {
  const { t } = useI18n();
  const live = useLive();
  const [params, setParams] = useSearchParams();
  const node = params.get('node') || '';
  const group = params.get('group') || '';
  const filterValue = node ? 'node:' + node : group ? 'group:' + group : '';
  const forwards = useResource(() => api.forwards(node ? { node } : group ? { group } : null), [node, group]);
  const nodes = useResource(() => api.nodes(), []);
  const groups = useResource(() => api.groups(), []);
  useInterval(() => forwards.reload(), 10000);
  const fid = useId();
  const writable = useCanWrite();

  const setFilter = (v) => {
    if (!v) setParams({});
    else {
      const i = v.indexOf(':');
      setParams({ [v.slice(0, i)]: v.slice(i + 1) });
    }
  };

  const list = forwards.data || [];
  return (
    <div className="space-y-4">
      <PageHeader
        title={t('fwd.title')}
        actions={
          writable ? (
            <Link
              to={
                node
                  ? `/forwards/new?node=${encodeURIComponent(node)}`
                  : group
                    ? `/forwards/new?group=${encodeURIComponent(group)}`
                    : '/forwards/new'
              }
              className={cx('rounded-md bg-sky-700 px-3 py-2 text-sm font-medium text-white hover:bg-sky-800', focus)}
            >
              {t('fwd.new')}
            </Link>
          ) : null
        }
      />
      <div className="flex flex-wrap items-end gap-2">
        <div className="w-full sm:w-72">
          <RLabel.Root htmlFor={fid} className="mb-1 block text-sm font-medium text-slate-700">
            {t('fwd.filter')}
          </RLabel.Root>
          <Select id={fid} value={filterValue} onChange={(e) => setFilter(e.target.value)}>
            <option value="">{t('fwd.filter_all')}</option>
            <optgroup label={t('nav.nodes')}>
              {(nodes.data || []).map((n) => (
                <option key={'n' + n.id} value={'node:' + n.name}>
                  {n.name}
                </option>
              ))}
            </optgroup>
            <optgroup label={t('nav.groups')}>
              {(groups.data || []).map((g) => (
                <option key={'g' + g.id} value={'group:' + g.name}>
                  {g.name}
                </option>
              ))}
            </optgroup>
          </Select>
        </div>
      </div>
      <ErrorBanner error={forwards.error} />
      <Card>
        {forwards.loading ? (
          <Loading />
        ) : list.length === 0 ? (
          <Empty>{t('fwd.empty')}</Empty>
        ) : (
          <ForwardTable forwards={list} live={live.forwards} />
        )}
      </Card>
    </div>
  );
}
