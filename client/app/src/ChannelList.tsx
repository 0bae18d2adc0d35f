import { createSignal, For, Show } from 'solid-js';
import type { ChannelView } from '../../src/desktop/messages.ts';
import { explain } from './ConnectScreen.tsx';
import type { ExtensionLink } from './link.ts';
import { view } from './store.ts';

interface Draft {
  id: string | null;
  name: string;
  password: string;
  userLimit: number;
  bitrate: number;
  frameMs: 10 | 20;
}

const empty = (): Draft => ({ id: null, name: '', password: '', userLimit: 0, bitrate: 32_000, frameMs: 20 });

export function ChannelList(props: { link: ExtensionLink }) {
  const [draft, setDraft] = createSignal<Draft | null>(null);
  const [askPassword, setAskPassword] = createSignal<ChannelView | null>(null);
  const [password, setPassword] = createSignal('');
  const [error, setError] = createSignal<string | null>(null);

  const full = (c: ChannelView) =>
    c.userLimit > 0 && c.memberCount >= c.userLimit && c.id !== view.state.channelId;
  const mine = (c: ChannelView) => c.ownerId === view.state.userId || view.state.isAdmin;

  const join = async (c: ChannelView, pw?: string) => {
    if (full(c)) return;
    if (c.hasPassword && pw === undefined) {
      setPassword('');
      setAskPassword(c);
      return;
    }
    setError(null);
    const r = await props.link.request({
      cmd: 'join',
      channelId: c.id,
      ...(pw !== undefined ? { password: pw } : {}),
    });
    if (!r.ok && r.error)
      setError(
        r.error.code === 'WRONG_PASSWORD' ? 'Wrong password.' : explain(r.error.code, r.error.message),
      );
    else setAskPassword(null);
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
          ...(d.password ? { password: d.password } : {}),
        })
      : await props.link.request({
          cmd: 'channel.create',
          ...common,
          ...(d.password ? { password: d.password } : {}),
        });
    if (!r.ok && r.error) {
      setError(explain(r.error.code, r.error.message));
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
        <button class="btn btn-small" onClick={() => setDraft(empty())} data-testid="new-channel">
          + New
        </button>
      </div>
      <Show when={error()}>
        <div class="banner banner-error" role="alert">
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
                disabled={full(c)}
                data-testid="channel"
                data-name={c.name}
                aria-current={c.id === view.state.channelId ? 'true' : undefined}
              >
                <span class="channel-name">
                  {c.hasPassword ? '🔒 ' : '# '}
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
                  onClick={() =>
                    setDraft({
                      id: c.id,
                      name: c.name,
                      password: '',
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
          <div class="modal" role="dialog" aria-modal="true" aria-label="Channel password">
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
                  autofocus
                  value={password()}
                  onInput={(e) => setPassword(e.currentTarget.value)}
                  data-testid="channel-password"
                />
              </label>
              <div class="row">
                <button class="btn btn-primary" type="submit">
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
          >
            <form class="card" onSubmit={(e) => void saveDraft(e)} data-testid="channel-form">
              <h3>{d().id ? 'Edit channel' : 'New channel'}</h3>
              <label class="field">
                <span>Name</span>
                <input
                  class="input"
                  required
                  maxLength={64}
                  autofocus
                  value={d().name}
                  onInput={(e) => setDraft({ ...d(), name: e.currentTarget.value })}
                  data-testid="channel-name"
                />
              </label>
              <label class="field">
                <span>{d().id ? 'New password (empty: keep)' : 'Password (optional)'}</span>
                <input
                  class="input"
                  type="password"
                  value={d().password}
                  onInput={(e) => setDraft({ ...d(), password: e.currentTarget.value })}
                />
              </label>
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
              <div class="row">
                <button class="btn btn-primary" type="submit" data-testid="channel-save">
                  {d().id ? 'Save' : 'Create and join'}
                </button>
                <Show when={d().id}>
                  <button
                    class="btn btn-danger"
                    type="button"
                    onClick={() => {
                      void props.link
                        .request({ cmd: 'channel.delete', channelId: d().id! })
                        .then(() => setDraft(null));
                    }}
                  >
                    Delete
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
