import { useEffect, useState } from 'react';
import { useI18n } from '../i18n/index.jsx';
import { FormActions } from '../components/FormParts.jsx';
import { api } from '../lib/api.js';
import { useCanWrite } from '../auth.jsx';
import { useResource } from '../lib/hooks.js';
import {
  apiErrorText,
  Button,
  Card,
  ConfirmDialog,
  Dialog,
  Empty,
  ErrorBanner,
  Field,
  Input,
  Loading,
  PageHeader,
  tableCls,
  tdCls,
  thCls,
} from '../components/ui.jsx';
import NamePicker from '../components/NamePicker.jsx';

// Create (group = null) or edit a group: its name and its members.
function GroupDialog({ group, nodes, open, onOpenChange, onSaved }) {
  const { t } = useI18n();
  const [name, setName] = useState('');
  const [members, setMembers] = useState([]);
  const [errs, setErrs] = useState({});
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (open) {
      setName(group?.name || '');
      setMembers(group?.nodes || []);
      setErrs({});
      setErr(null);
    }
  }, [open, group]);
  const submit = async (e) => {
    e.preventDefault();
    if (!name.trim()) return setErrs({ name: t('v.required') });
    setBusy(true);
    setErr(null);
    setErrs({});
    try {
      if (group) await api.updateGroup(group.id, { name: name.trim(), nodes: members });
      else await api.createGroup({ name: name.trim(), nodes: members });
      onOpenChange(false);
      onSaved();
    } catch (e2) {
      if (e2.field) setErrs({ [e2.field]: apiErrorText(t, e2) });
      else setErr(e2);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog
      open={open}
      onOpenChange={onOpenChange}
      title={group ? t('groups.edit_title', { name: group.name }) : t('groups.new_title')}
    >
      <form onSubmit={submit} className="space-y-3" noValidate>
        <Field label={t('groups.name')} error={errs.name}>
          {(c) => <Input {...c} value={name} onChange={(e) => setName(e.target.value)} autoFocus />}
        </Field>
        <NamePicker
          legend={t('groups.members')}
          names={(nodes || []).map((n) => n.name)}
          value={members}
          onChange={setMembers}
          emptyText={t('groups.no_nodes')}
          error={errs.nodes}
        />
        <ErrorBanner error={err} />
        <FormActions onCancel={() => onOpenChange(false)} busy={busy} />
      </form>
    </Dialog>
  );
}

export default function Groups() {
  const { t } = useI18n();
  const groups = useResource(() => api.groups(), []);
  const nodes = useResource(() => api.nodes(), []);
  const [editing, setEditing] = useState(null); // 'new' | group
  const [removing, setRemoving] = useState(null);
  const writable = useCanWrite();
  const list = groups.data || [];
  return (
    <div className="space-y-4">
      <PageHeader
        title={t('groups.title')}
        actions={writable ? <Button onClick={() => setEditing('new')}>{t('groups.new')}</Button> : null}
      />
      <ErrorBanner error={groups.error} />
      <Card>
        {groups.loading ? (
          <Loading />
        ) : list.length === 0 ? (
          <Empty>{t('groups.empty')}</Empty>
        ) : (
          <div className="overflow-x-auto">
            <table className={tableCls}>
              <thead>
                <tr>
                  <th className={thCls}>{t('groups.name')}</th>
                  <th className={thCls}>{t('groups.members')}</th>
                  <th className={thCls}>
                    <span className="sr-only">{t('common.actions')}</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((g) => (
                  <tr key={g.id}>
                    <td data-label={t('groups.name')} className={tdCls + ' font-medium'}>
                      {g.name}
                    </td>
                    <td data-label={t('groups.members')} className={tdCls}>
                      {(g.nodes || []).join(', ') || t('groups.no_members')}
                    </td>
                    <td data-label={''} className={tdCls + ' text-right'}>
                      {writable ? (
                        <div className="flex flex-wrap justify-end gap-1">
                          <Button
                            size="sm"
                            variant="secondary"
                            onClick={() => setEditing(g)}
                            aria-label={t('groups.edit_aria', { name: g.name })}
                          >
                            {t('common.edit')}
                          </Button>
                          <Button
                            size="sm"
                            variant="danger"
                            onClick={() => setRemoving(g)}
                            aria-label={t('groups.delete_aria', { name: g.name })}
                          >
                            {t('common.delete')}
                          </Button>
                        </div>
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <GroupDialog
        group={editing === 'new' ? null : editing}
        nodes={nodes.data}
        open={!!editing}
        onOpenChange={(o) => !o && setEditing(null)}
        onSaved={() => groups.reload()}
      />
      <ConfirmDialog
        open={!!removing}
        onOpenChange={(o) => !o && setRemoving(null)}
        title={t('groups.delete_title', { name: removing?.name || '' })}
        description={t('groups.delete_help')}
        confirmLabel={t('common.delete')}
        onConfirm={async () => {
          await api.deleteGroup(removing.id);
          groups.reload();
        }}
      />
    </div>
  );
}
