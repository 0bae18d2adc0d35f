import { createSignal, For, Show } from 'solid-js';
import type { ChannelView } from '../../src/desktop/messages.ts';
import { explain } from './ConnectScreen.tsx';
import { focusSoon } from './focus.ts';
import type { ExtensionLink } from './link.ts';
import { view } from './store.ts';

interface Draft {
  id: string | null;
  name: string;
  password: string;
  /** Editing a locked channel: remove its password (sent as null, protocol README 4.6). */
  removePassword: boolean;
  hadPassword: boolean;
  userLimit: number;
  bitrate: number;
  frameMs: 10 | 20;
}

const empty = (): Draft => ({
  id: null,
  name: '',
  password: '',
  removePassword: false,
  hadPassword: false,
  userLimit: 0,
  bitrate: 32_000,
  frameMs: 20,
});

/** Drawn, not an emoji: a system without an emoji font shows a box for 🔒. */
function LockIcon() {
  return (
    <svg class="icon" viewBox="0 0 16 16" width="12" height="12" aria-hidden="true">
      <rect x="3" y="7" width="10" height="8" rx="1.5" fill="currentColor" />
      <path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="currentColor" stroke-width="1.6" />
    </svg>
  );
}

export function ChannelList(props: { link: ExtensionLink }) {
  const [draft, setDraft] = createSignal<Draft | null>(null);
  const [askPassword, setAskPassword] = createSignal<ChannelView | null>(null);
  const [password, setPassword] = createSignal('');
  const [error, setError] = createSignal<string | null>(null);
  const [passwordError, setPasswordError] = createSignal<string | null>(null);
  // The channel dialog's own message (the list's banner is behind it), and a two-step delete.
  const [formError, setFormError] = createSignal<string | null>(null);
  const [confirmDelete, setConfirmDelete] = createSignal(false);
  const openDraft = (d: Draft) => {
    setFormError(null);
    setConfirmDelete(false);
    setDraft(d);
  };
  const deleteDraft = async (id: string) => {
    if (!confirmDelete()) {
      setConfirmDelete(true);
      return;
    }
    const r = await props.link.request({ cmd: 'channel.delete', channelId: id });
    if (r.ok) setDraft(null);
    else if (r.error) setFormError(explain(r.error.code, r.error.message));
  };

  const full = (c: ChannelView) =>
    c.userLimit > 0 && c.memberCount >= c.userLimit && c.id !== view.state.channelId;
  const mine = (c: ChannelView) => c.ownerId === view.state.userId || view.state.isAdmin;

  // The server decides (the list may be a moment old): a full channel is still asked, and its
  // CHANNEL_FULL answer becomes the message. Owners and admins need no password.
  const join = async (c: ChannelView, pw?: string) => {
    if (c.id === view.state.channelId) return;
    if (c.hasPassword && pw === undefined && !mine(c)) {
      setPassword('');
      setPasswordError(null);
      setAskPassword(c);
      return;
    }
    setError(null);
    setPasswordError(null);
    const r = await props.link.request({
      cmd: 'join',
      channelId: c.id,
      ...(pw !== undefined ? { password: pw } : {}),
    });
    if (r.ok) {
      setAskPassword(null);
      return;
    }
    const code = r.error?.code ?? 'ERROR';
    const msg = explain(code, r.error?.message ?? 'failed', r.error?.retryAfterMs, c);
    // A wrong password keeps the prompt open, with the message in it.
    if (askPassword() && (code === 'WRONG_PASSWORD' || code === 'RATE_LIMITED')) setPasswordError(msg);
    else {
      setAskPassword(null);
      setError(msg);
    }
  };

  const saveDraft = async (e: Event) => {
    e.preventDefault();
    const d = draft()!;
    const common = { name: d.name.trim(), userLimit: d.userLimit, bitrate: d.bitrate, frameMs: d.frameMs };
    const r = d.id
      ? await props.link.request({
          cmd: 'channel.update',
          channelId: d.id,
          ...common,
          ...(d.removePassword ? { password: null } : d.password ? { password: d.password } : {}),
        })
      : await props.link.request({
          cmd: 'channel.create',
          ...common,
          ...(d.password ? { password: d.password } : {}),
        });
    if (!r.ok && r.error) {
      setFormError(explain(r.error.code, r.error.message));
      return;
    }
    setDraft(null);
    setError(null);
    if (!d.id) {
      const id = (r.data as { channelId?: string } | undefined)?.channelId;
      const c = view.channels.find((x) => x.id === id);
      if (c) await join(c, d.password || undefined);
    }
  };

  return (
    <nav class="channels" aria-label="Channels">
      <div class="section-head">
        <h2>Channels</h2>
        <button class="btn btn-small" onClick={() => openDraft(empty())} data-testid="new-channel">
          + New
        </button>
      </div>
      <Show when={error()}>
        <div class="banner banner-error" role="alert" data-testid="channel-error">
          {error()}
        </div>
      </Show>
      <ul class="channel-list" data-testid="channel-list">
        <For each={view.channels} fallback={<li class="muted small">No channels yet.</li>}>
          {(c) => (
            <li class="channel-item" classList={{ active: c.id === view.state.channelId, full: full(c) }}>
              <button
                class="channel-btn"
                onClick={() => void join(c)}
                data-testid="channel"
                data-name={c.name}
                data-locked={String(c.hasPassword)}
                data-full={String(full(c))}
                aria-label={`${c.name}${c.hasPassword ? ', locked' : ''}${full(c) ? ', full' : ''}`}
                aria-current={c.id === view.state.channelId ? 'true' : undefined}
              >
                <span class="channel-name">
                  <Show when={c.hasPassword} fallback={<span aria-hidden="true"># </span>}>
                    <LockIcon />
                  </Show>
                  {c.name}
                </span>
                <span class="badge" data-testid="count">
                  {full(c) ? 'full' : c.userLimit > 0 ? `${c.memberCount}/${c.userLimit}` : c.memberCount}
                </span>
              </button>
              <Show when={mine(c)}>
                <button
                  class="btn btn-icon"
                  title={`Edit ${c.name}`}
                  aria-label={`Edit ${c.name}`}
                  data-testid="edit-channel"
                  onClick={() =>
                    openDraft({
                      id: c.id,
                      name: c.name,
                      password: '',
                      removePassword: false,
                      hadPassword: c.hasPassword,
                      userLimit: c.userLimit,
                      bitrate: c.bitrate,
                      frameMs: c.frameMs === 10 ? 10 : 20,
                    })
                  }
                >
                  ✎
                </button>
              </Show>
            </li>
          )}
        </For>
      </ul>

      <Show when={askPassword()}>
        {(c) => (
          <div
            class="modal"
            role="dialog"
            aria-modal="true"
            aria-label="Channel password"
            onKeyDown={(e) => e.key === 'Escape' && setAskPassword(null)}
          >
            <form
              class="card"
              onSubmit={(e) => {
                e.preventDefault();
                void join(c(), password());
              }}
            >
              <h3>{c().name} is locked</h3>
              <label class="field">
                <span>Password</span>
                <input
                  class="input"
                  type="password"
                  ref={focusSoon}
                  value={password()}
                  onInput={(e) => setPassword(e.currentTarget.value)}
                  data-testid="channel-password"
                />
              </label>
              <Show when={passwordError()}>
                <div class="banner banner-error" role="alert" data-testid="password-error">
                  {passwordError()}
                </div>
              </Show>
              <div class="row">
                <button class="btn btn-primary" type="submit" data-testid="channel-password-join">
                  Join
                </button>
                <button class="btn btn-ghost" type="button" onClick={() => setAskPassword(null)}>
                  Cancel
                </button>
              </div>
            </form>
          </div>
        )}
      </Show>

      <Show when={draft()}>
        {(d) => (
          <div
            class="modal"
            role="dialog"
            aria-modal="true"
            aria-label={d().id ? 'Edit channel' : 'New channel'}
            onKeyDown={(e) => e.key === 'Escape' && setDraft(null)}
          >
            <form class="card" onSubmit={(e) => void saveDraft(e)} data-testid="channel-form">
              <h3>{d().id ? 'Edit channel' : 'New channel'}</h3>
              <label class="field">
                <span>Name</span>
                <input
                  class="input"
                  required
                  maxLength={64}
                  ref={focusSoon}
                  value={d().name}
                  onInput={(e) => setDraft({ ...d(), name: e.currentTarget.value })}
                  data-testid="channel-name"
                />
              </label>
              <label class="field">
                <span>
                  {!d().id
                    ? 'Password (optional)'
                    : d().hadPassword
                      ? 'New password (empty: keep the current one)'
                      : 'Password (empty: none)'}
                </span>
                <input
                  class="input"
                  type="password"
                  maxLength={128}
                  autocomplete="new-password"
                  value={d().password}
                  disabled={d().removePassword}
                  onInput={(e) => setDraft({ ...d(), password: e.currentTarget.value })}
                  data-testid="channel-form-password"
                />
              </label>
              <Show when={d().hadPassword}>
                <label class="radio">
                  <input
                    type="checkbox"
                    checked={d().removePassword}
                    onChange={(e) => setDraft({ ...d(), removePassword: e.currentTarget.checked })}
                    data-testid="channel-form-remove-password"
                  />
                  <span>Remove the password (anyone can join)</span>
                </label>
              </Show>
              <div class="grid2">
                <label class="field">
                  <span>User limit (0: none)</span>
                  <input
                    class="input"
                    type="number"
                    min="0"
                    max="1000"
                    value={d().userLimit}
                    onInput={(e) => setDraft({ ...d(), userLimit: Number(e.currentTarget.value) || 0 })}
                  />
                </label>
                <label class="field">
                  <span>Bitrate</span>
                  <select
                    class="input"
                    value={d().bitrate}
                    onChange={(e) => setDraft({ ...d(), bitrate: Number(e.currentTarget.value) })}
                  >
                    <option value="16000">16 kbit/s</option>
                    <option value="32000">32 kbit/s</option>
                    <option value="64000">64 kbit/s</option>
                    <option value="96000">96 kbit/s</option>
                  </select>
                </label>
                <label class="field">
                  <span>Frame size</span>
                  <select
                    class="input"
                    value={d().frameMs}
                    onChange={(e) => setDraft({ ...d(), frameMs: e.currentTarget.value === '10' ? 10 : 20 })}
                  >
                    <option value="10">10 ms (lower delay)</option>
                    <option value="20">20 ms (fewer packets)</option>
                  </select>
                </label>
              </div>
              <Show when={formError()}>
                <div class="banner banner-error" role="alert" data-testid="channel-form-error">
                  {formError()}
                </div>
              </Show>
              <div class="row">
                <button class="btn btn-primary" type="submit" data-testid="channel-save">
                  {d().id ? 'Save' : 'Create and join'}
                </button>
                <Show when={d().id}>
                  <button
                    class="btn btn-danger"
                    type="button"
                    onClick={() => void deleteDraft(d().id!)}
                    data-testid="channel-delete"
                  >
                    {confirmDelete() ? 'Delete, removing everyone in it' : 'Delete'}
                  </button>
                </Show>
                <button class="btn btn-ghost" type="button" onClick={() => setDraft(null)}>
                  Cancel
                </button>
              </div>
            </form>
          </div>
        )}
      </Show>
    </nav>
  );
}
