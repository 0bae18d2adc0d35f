import { createSignal, Show } from 'solid-js';
import type { ExtensionLink } from './link.ts';
import { save, saved } from './settings.ts';
import { view } from './store.ts';

/** A sentence for each failure a person can act on; `channel`: the one a join was for. */
export function explain(
  code: string,
  message: string,
  retryAfterMs?: number,
  channel?: { name: string; userLimit: number },
): string {
  switch (code) {
    case 'SERVER_DOWN':
      return 'Nothing answers at that address. Is the server running, and is the port right?';
    case 'BAD_ADDRESS':
      return 'That address does not look right. Use host:port, for example localhost:7800.';
    case 'NICKNAME_TAKEN':
      return 'Someone is already using that nickname. Pick another one.';
    case 'UNSUPPORTED_VERSION':
    case 'PROTOCOL_MISMATCH':
      return 'This server speaks another protocol version. Update the app or the server.';
    case 'ADMIN_TOKEN_REJECTED':
      return 'The server did not accept that admin token. Check it, or leave the field empty.';
    case 'CHANNEL_FULL': {
      const n = channel?.userLimit;
      return `${channel ? `${channel.name} is full (${n} of ${n})` : 'That channel is full'}. Try again when someone leaves.`;
    }
    case 'WRONG_PASSWORD':
      return 'Wrong password.';
    case 'CHANNEL_NAME_TAKEN':
      return 'A channel with that name exists already. Pick another name.';
    case 'FORBIDDEN':
      return "Only the channel's owner or an admin can do that.";
    case 'NOT_CONNECTED':
      return 'Not connected to the server right now.';
    case 'RATE_LIMITED':
      return retryAfterMs !== undefined
        ? `Too many tries. Wait ${Math.max(1, Math.ceil(retryAfterMs / 1000))} s, then try again.`
        : 'Too many tries. Wait a moment, then try again.';
    case 'INVALID_INPUT':
      return message.charAt(0).toUpperCase() + message.slice(1) + '.';
    default:
      return message;
  }
}

export function ConnectScreen(props: { link: ExtensionLink; onSettings: () => void }) {
  const [server, setServer] = createSignal(saved.server);
  const [nickname, setNickname] = createSignal(saved.nickname);
  // A saved admin token is never put back in the field: it shows as "saved", and typing replaces it.
  const [adminToken, setAdminToken] = createSignal('');
  const [error, setError] = createSignal<string | null>(null);
  const [busy, setBusy] = createSignal(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const typed = adminToken().trim();
    save({ server: server().trim(), nickname: nickname().trim(), ...(typed ? { adminToken: typed } : {}) });
    setAdminToken('');
    const r = await props.link.request({
      cmd: 'connect',
      server: server().trim(),
      nickname: nickname().trim(),
      ...(saved.adminToken ? { adminToken: saved.adminToken } : {}),
    });
    setBusy(false);
    if (!r.ok && r.error) {
      // A rejected admin token is not kept for next time.
      if (r.error.code === 'ADMIN_TOKEN_REJECTED') save({ adminToken: '' });
      setError(explain(r.error.code, r.error.message));
    }
  };

  return (
    <div class="connect">
      <form class="card connect-card" onSubmit={(e) => void submit(e)}>
        <h1>Voice</h1>
        <p class="muted">Talk with your friends on your own server.</p>
        <label class="field">
          <span>Server address</span>
          <input
            class="input"
            data-testid="server"
            value={server()}
            onInput={(e) => setServer(e.currentTarget.value)}
            placeholder="localhost:7800"
            autocomplete="off"
            required
          />
        </label>
        <label class="field">
          <span>Nickname</span>
          <input
            class="input"
            data-testid="nickname"
            value={nickname()}
            onInput={(e) => setNickname(e.currentTarget.value)}
            minLength={2}
            maxLength={32}
            required
          />
        </label>
        <label class="field">
          <span>Admin token (optional)</span>
          <div class="row">
            <input
              class="input"
              type="password"
              data-testid="admin-token"
              value={adminToken()}
              onInput={(e) => setAdminToken(e.currentTarget.value)}
              placeholder={saved.adminToken ? 'Saved (hidden): type to replace' : 'Only for server admins'}
              autocomplete="off"
              maxLength={256}
            />
            <Show when={saved.adminToken}>
              <button
                class="btn btn-ghost"
                type="button"
                data-testid="forget-admin-token"
                onClick={() => save({ adminToken: '' })}
              >
                Forget
              </button>
            </Show>
          </div>
        </label>
        <Show
          when={
            error() ??
            (view.state.error && view.state.connection === 'disconnected' ? view.state.error.message : null)
          }
        >
          {(msg) => (
            <div class="banner banner-error" role="alert" data-testid="connect-error">
              {msg()}
            </div>
          )}
        </Show>
        <div class="row">
          <button class="btn btn-primary" type="submit" disabled={busy()} data-testid="connect">
            {busy() ? 'Connecting…' : 'Connect'}
          </button>
          <button class="btn btn-ghost" type="button" onClick={() => props.onSettings()}>
            Settings
          </button>
        </div>
      </form>
    </div>
  );
}
