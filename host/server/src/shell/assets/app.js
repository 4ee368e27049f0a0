// The shell: who is signed in, the router (#/chats, #/apps, #/app/ID?k=v,
// #/wallet, #/privacy, #/signin, #/signup), the live WebSocket, and the
// host's prompts. Deep links (#/app/ID?k=v) open after sign-in if needed.

import { get, post, del, ApiError } from './api.js';
import { el, replace } from './dom.js';
import { chatList, conversation } from './chats.js';
import { directory, openApp } from './apps.js';
import { wallet } from './wallet.js';
import { privacy } from './privacy.js';
import { showPrompt } from './dialogs.js';
import { readable } from './labels.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');
const waiting = document.getElementById('waiting');

const shell = {
  me: null,
  socket: null,
  onMessage: null,
  /** Called when a live connection opens (the first, or one after a drop
   *  that may reach another node): the view catches up from the store. */
  onResync: null,
  /** The app on screen draws the view its app answered a prompt with. */
  drawAnswer: null,
  /** Which route() call drew the view on screen: a view whose reads end
   *  after another began draws nothing. */
  viewId: 0,
  answering: false,
  again: null,
  /** Sends on the live connection awaiting their answer, by client id. */
  pending: new Map(),

  /** Send a chat message and return it as stored: over the live connection
   *  when it is open (answered once durable), else as a request. A send the
   *  connection loses goes again as a request under the same client id,
   *  which the server stores once. */
  async send(conversationId, clientId, text) {
    const socket = this.socket;
    if (socket && socket.readyState === WebSocket.OPEN) {
      try {
        return await new Promise((resolve, reject) => {
          const timer = setTimeout(() => settle(clientId, new Error('no answer')), 10000);
          this.pending.set(clientId, { resolve, reject, timer });
          socket.send(JSON.stringify({ type: 'send', conversation_id: conversationId, client_id: clientId, text }));
        });
      } catch (e) {
        if (e instanceof ApiError) throw e;
      }
    }
    return post(`/conversations/${encodeURIComponent(conversationId)}/messages`, { client_id: clientId, text });
  },

  /** Run `work`, showing an API error in place of a crash. */
  async guard(work) {
    try {
      return await work();
    } catch (e) {
      notice(e instanceof ApiError ? readable(e.message) : 'Something went wrong. Check your connection and try again.');
      return undefined;
    }
  },

  /** Open the app a card points to, with its parameters. */
  openCard(card) {
    const query = new URLSearchParams(card.params).toString();
    location.hash = `#/app/${encodeURIComponent(card.app_id)}${query ? `?${query}` : ''}`;
  },

  /** Prompts the user put off in this page (Not now, Escape, leaving the
   *  page): not shown again by themselves, but counted under "Waiting for
   *  you", which brings them back. */
  putOff: new Map(),

  /** Prompts put off and brought back by a press in their app: shown after
   *  whatever that press asked for, so the sheet the user meets first is
   *  the one they just asked for. */
  broughtBack: new Set(),

  /** The user acted in `app` again: what they put off of its asks comes
   *  back (an app asking again for the same payment gets the same sheet),
   *  after what the press itself asks. */
  bringBack(app) {
    for (const [id, of] of this.putOff) {
      if (of !== app) continue;
      this.putOff.delete(id);
      this.broughtBack.add(id);
    }
  },

  /** Put the pending host prompts in front of the user, one at a time,
   *  until none is left (answering one may raise the next): those of
   *  `onlyApp` when given (the app on screen), else all. A prompt the user
   *  puts off is skipped, and the next one shown. `onAnswer` sees each
   *  answer (with the view its app drew). */
  async answerPrompts(onAnswer = () => {}, onlyApp = null) {
    if (!this.me) return [];
    if (this.answering) {
      // Asked for while a round runs: the next round, once it ends (for
      // all apps if either asked for all).
      const wider = this.again && !this.again.onlyApp ? null : onlyApp;
      this.again = { onAnswer, onlyApp: this.again ? wider : onlyApp };
      return [];
    }
    this.answering = true;
    const answered = [];
    // A round belongs to the page it began on: leaving it ends the round.
    const view = this.viewId;
    try {
      for (let round = 0; round < 10 && this.viewId === view; round++) {
        // Another tab may have signed another account in: no dialog shows
        // one account's phrase over another's prompt.
        if (await sessionChanged()) return answered;
        const all = await get('/prompts');
        showWaiting(all);
        const pending = all.filter((p) => !this.putOff.has(p.id) && (!onlyApp || p.app === onlyApp));
        if (!pending.length) break;
        const later = (p) => Number(this.broughtBack.has(p.id));
        pending.sort((a, b) => later(a) - later(b));
        for (const prompt of pending) {
          if (this.viewId !== view) break;
          this.broughtBack.delete(prompt.id);
          const result = await showPrompt(prompt, this.me);
          if (result === null) {
            this.putOff.set(prompt.id, prompt.app);
            continue;
          }
          answered.push(result);
          onAnswer(result);
        }
      }
      showWaiting(await get('/prompts'));
    } catch {
      // The list is fetched again on the next action.
    } finally {
      this.answering = false;
    }
    const next = this.again;
    this.again = null;
    if (next) answered.push(...await this.answerPrompts(next.onAnswer, next.onlyApp));
    // A page that is no app's (the wallet, the privacy report) is drawn
    // again: what was just answered changed what it shows.
    else if (answered.length && !this.drawAnswer && this.viewId === view) route();
    return answered;
  },
};

/** Tabs of this browser share one session (its cookie): one that signs in
 *  or out tells the others, which start over as whoever is signed in now,
 *  so none goes on showing (and acting as) the account before. */
const sessions = 'BroadcastChannel' in window ? new BroadcastChannel('superapp-session') : null;

function tellOtherTabs() {
  if (sessions) sessions.postMessage(shell.me ? shell.me.id : null);
}

/** Start over as whoever is signed in now, from the chat list: the page
 *  on screen (a chat, an app's deep link) was the account before's. */
function startOver() {
  location.replace('#/chats');
  location.reload();
}

if (sessions) {
  sessions.addEventListener('message', (event) => {
    if ((shell.me ? shell.me.id : null) !== event.data) startOver();
  });
}

/** Whether the session now belongs to another account than the one on
 *  screen (signed in elsewhere in this browser): then the page starts over. */
async function sessionChanged() {
  if (!shell.me) return false;
  let now;
  try {
    now = await get('/me');
  } catch {
    return false; // Signed out or unreachable: the API's handling tells.
  }
  if (shell.me && now.id !== shell.me.id) {
    startOver();
    return true;
  }
  return false;
}

// Coming back to the tab: still the same account?
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') sessionChanged();
});

/** The host bar's count of the prompts waiting for the user (put off,
 *  another app's, or the one on screen). */
function showWaiting(all) {
  const n = all.length;
  waiting.hidden = n === 0;
  waiting.textContent = `Waiting for you (${n})`;
}

waiting.addEventListener('click', () => {
  shell.putOff.clear();
  shell.answerPrompts((answered) => { if (shell.drawAnswer) shell.drawAnswer(answered); });
});

/** One notice at a time: a newer one replaces the last. It stays until
 *  the user dismisses it or the page changes (a notice that went away by
 *  itself could be gone before it was read). */
function notice(text) {
  for (const old of main.querySelectorAll('.notice')) old.remove();
  const dismiss = el('button', { type: 'button', class: 'quiet' }, 'Dismiss');
  const box = el('p', { class: 'notice', role: 'alert' }, text, ' ', dismiss);
  dismiss.addEventListener('click', () => {
    box.remove();
    main.focus({ preventScroll: true });
  });
  main.prepend(box);
}

/** Answer the send `clientId` waits for: a message, or an error. */
function settle(clientId, answer) {
  const waiting = shell.pending.get(clientId);
  if (!waiting) return;
  shell.pending.delete(clientId);
  clearTimeout(waiting.timer);
  if (answer instanceof Error) waiting.reject(answer);
  else waiting.resolve(answer);
}

function connect() {
  if (shell.socket) return;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`;
  const socket = new WebSocket(url);
  shell.socket = socket;
  socket.addEventListener('open', () => {
    // Pushes sent while no connection was open are lost by design; the
    // store has every message, so the open view reads what it missed. That
    // holds for the first connection too: the view may have read the store
    // before it opened.
    if (shell.onResync) shell.onResync();
  });
  socket.addEventListener('message', (event) => {
    let push;
    try {
      push = JSON.parse(event.data);
    } catch {
      return;
    }
    if (push.type === 'sent') settle(push.client_id, push.message);
    if (push.type === 'error' && push.error) {
      settle(push.client_id, new ApiError(push.status, push.error.code, push.error.message));
    }
    if (push.type === 'message') {
      if (shell.onMessage) shell.onMessage(push.message);
    }
  });
  socket.addEventListener('close', (event) => {
    if (shell.socket === socket) shell.socket = null;
    for (const clientId of [...shell.pending.keys()]) settle(clientId, new Error('connection closed'));
    if (!shell.me) return;
    // 4001: the server ended this session's connections (signed out
    // elsewhere, the password changed).
    if (event.code === 4001) {
      sessionEnded();
      return;
    }
    // Otherwise try again, once the session is known to stand (a refused
    // check ends it, through the API's 401 event).
    setTimeout(async () => {
      if (!shell.me) return;
      try {
        await get('/me');
      } catch {
        // Unreachable or ended: the next round tells.
      }
      if (shell.me) connect();
    }, 2000);
  });
}

/** The session ended elsewhere: nothing of the user stays on screen, and
 *  the sign-in page brings them back where they were. */
function sessionEnded() {
  if (!shell.me) return;
  const where = location.hash && !location.hash.startsWith('#/signin') ? location.hash : '#/chats';
  signedOut();
  replace(main);
  sessionEndedNotice = true;
  location.hash = `#/signin?next=${encodeURIComponent(where)}`;
}

/** Whether the sign-in page says the session ended (once). */
let sessionEndedNotice = false;

window.addEventListener('superapp:session-ended', sessionEnded);

function signedIn(me) {
  shell.me = me;
  nav.hidden = false;
  signOut.hidden = false;
  who.textContent = me.display_name;
  connect();
}

/** After signing in: what waits for the user (payments, documents,
 *  permissions asked while they were away) comes up. */
function afterSignIn() {
  setTimeout(() => shell.answerPrompts().catch(() => {}), 0);
}

function signedOut() {
  shell.me = null;
  shell.putOff.clear();
  shell.broughtBack.clear();
  waiting.hidden = true;
  nav.hidden = true;
  signOut.hidden = true;
  who.textContent = '';
  if (shell.socket) shell.socket.close();
}

signOut.addEventListener('click', async () => {
  await shell.guard(() => del('/sessions/current'));
  signedOut();
  tellOtherTabs();
  location.hash = '#/signin';
});

// "Skip to content" moves focus to the page's content; it is no route.
document.querySelector('a.skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

function field(id, label, attrs) {
  return el('div', { class: 'v-field' }, el('label', { for: id }, label), el('input', { id, name: id, required: true, ...attrs }));
}

function signInPage(next) {
  const form = el('form', { class: 'auth' },
    field('username', 'Username', { autocomplete: 'username' }),
    field('password', 'Password', { type: 'password', autocomplete: 'current-password' }),
    el('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    await shell.guard(async () => {
      await post('/sessions', { username: form.username.value, password: form.password.value });
      signedIn(await get('/me'));
      tellOtherTabs();
      location.hash = next || '#/chats';
      afterSignIn();
    });
  });
  replace(main, el('h1', {}, 'Sign in'), form, el('p', {}, 'New here? ', el('a', { href: `#/signup${next ? `?next=${encodeURIComponent(next)}` : ''}` }, 'Create an account')));
  if (sessionEndedNotice) {
    sessionEndedNotice = false;
    notice('Your session ended: sign in again.');
  }
  form.username.focus();
}

function signUpPage(next) {
  const form = el('form', { class: 'auth' },
    field('username', 'Username', { autocomplete: 'username' }),
    field('display_name', 'Your name', { autocomplete: 'name' }),
    field('password', 'Password (at least 8 characters)', { type: 'password', autocomplete: 'new-password' }),
    field('security_phrase', 'A security phrase only you know', { autocomplete: 'off', maxlength: 60 }),
    el('p', { class: 'muted' }, 'The super-app shows this phrase in every dialog it draws (payments, documents, permissions). An app can never show it: a dialog without your phrase is not from the super-app.'),
    el('button', { type: 'submit', class: 'primary' }, 'Create account'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    await shell.guard(async () => {
      await post('/accounts', {
        username: form.username.value,
        display_name: form.display_name.value,
        password: form.password.value,
        security_phrase: form.security_phrase.value,
      });
      await post('/sessions', { username: form.username.value, password: form.password.value });
      signedIn(await get('/me'));
      tellOtherTabs();
      location.hash = next || '#/apps';
    });
  });
  replace(main, el('h1', {}, 'Create an account'), form, el('p', {}, 'Have an account? ', el('a', { href: '#/signin' }, 'Sign in')));
  form.username.focus();
}

function parse(hash) {
  const [path, query = ''] = hash.replace(/^#/, '').split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: Object.fromEntries(new URLSearchParams(query)) };
}

async function route() {
  const { parts, query } = parse(location.hash || '#/chats');
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.nav === parts[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!shell.me && parts[0] !== 'signin' && parts[0] !== 'signup') {
    // Remember where the user was going (a deep link) for after sign-in.
    location.replace(`#/signin?next=${encodeURIComponent(location.hash || '#/chats')}`);
    return;
  }
  // Views that finish after the user moved on leave the page alone.
  shell.viewId += 1;
  shell.onMessage = null;
  shell.onResync = null;
  shell.drawAnswer = null;
  await shell.guard(async () => {
    switch (parts[0]) {
      case 'signin': return signInPage(query.next);
      case 'signup': return signUpPage(query.next);
      case 'chats': return parts[1] ? conversation(main, shell, parts[1]) : chatList(main, shell);
      case 'apps': return directory(main);
      case 'app': return openApp(main, shell, parts[1], query);
      case 'wallet': return wallet(main);
      case 'privacy': return privacy(main, shell, query.app);
      default: location.replace('#/chats');
    }
  });
  // The page's content, unless the page put focus in it (its first field,
  // an app's heading).
  const focused = document.activeElement;
  if (!focused || focused === document.body || !main.contains(focused)) main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);

(async () => {
  try {
    signedIn(await get('/me'));
  } catch {
    signedOut();
  }
  await route();
  if (shell.me) await shell.answerPrompts();
})();
