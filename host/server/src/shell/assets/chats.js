// Chats: the list with unread counts, a conversation with live updates,
// new direct and group chats. App cards in messages open their app.

import { get, getPage, post, del, ApiError } from './api.js';
import { el, replace, randomId, when, oneAtATime } from './dom.js';

/** Members by user id (display name and username), learned from member
 *  lists and from the list's direct chats. */
const people = new Map();

/** App names by id, from the directory (read once). */
let appNames = null;
async function learnApps() {
  if (appNames) return;
  appNames = new Map((await get('/apps')).map((a) => [a.id, a.name]));
}
const appName = (id) => (appNames && appNames.get(id)) || id;

/** The other member of a direct chat. */
function otherOf(c, me) {
  return people.get(c.members.find((m) => m !== me.id));
}

function titleOf(c, me) {
  if (c.title) return c.title;
  if (c.kind === 'direct') {
    const other = otherOf(c, me);
    return other ? other.display_name : 'Direct chat';
  }
  return 'Chat';
}

/** What kind of chat this is, drawn by the host next to its title: an
 *  app's chat carries a mark no person's name can copy, a person's their
 *  username, a group its size. */
function markOf(c, me) {
  if (c.kind === 'service') return el('span', { class: 'host-badge', title: 'Messages from an app you use, sent through superapp' }, 'App');
  if (c.kind === 'direct') {
    const other = otherOf(c, me);
    return other ? el('span', { class: 'username muted' }, `@${other.username}`) : null;
  }
  return el('span', { class: 'muted chat-kind' }, `Group · ${c.members.length} members`);
}

async function learnNames(id) {
  for (const u of await get(`/conversations/${encodeURIComponent(id)}/members`)) {
    people.set(u.id, u);
  }
}

/** A person as the shell names them: their name in its own direction,
 *  kept apart (bdi) from the @username beside it. */
function personName(u) {
  return [el('bdi', {}, u.display_name), ` @${u.username}`];
}

/** Who sent `m`, for a message not the user's own. */
function senderOf(m) {
  if (m.sender.startsWith('app:')) return [el('bdi', {}, appName(m.sender.slice(4))), ' (app)'];
  const u = people.get(m.sender);
  return u ? personName(u) : 'A former member';
}

export async function chatList(main, shell) {
  const view = shell.viewId;
  const chats = el('div');
  // How many pages of the list the user has asked to see.
  let pages = 1;
  // The list as stored now; a push or a new live connection reads it again
  // (one read at a time, the last one after the newest push).
  const refresh = oneAtATime(async () => {
    const seen = new Set();
    const list = [];
    let next = '/conversations';
    for (let page = 0; page < pages && next; page++) {
      const read = await getPage(next);
      // A chat that moved up between two pages is listed once.
      for (const c of read.data) if (!seen.has(c.id)) { seen.add(c.id); list.push(c); }
      next = read.next;
    }
    for (const c of list) if (c.with) people.set(c.with.id, c.with);
    if (shell.viewId !== view) return;
    const items = list.map((c) => el('li', {},
      el('a', { href: `#/chats/${encodeURIComponent(c.id)}`, class: `chat-link kind-${c.kind}` },
        el('span', { class: 'chat-title' }, el('span', { dir: 'auto' }, titleOf(c, shell.me)), ' ', markOf(c, shell.me)),
        c.unread > 0 ? el('span', { class: 'unread', 'aria-label': `${c.unread} unread` }, String(c.unread)) : null,
        el('span', { class: 'chat-last muted', dir: 'auto' }, c.last_message ? (c.last_message.card ? `▣ ${c.last_message.text}` : c.last_message.text) : 'No messages yet'))));
    const older = next ? el('button', { type: 'button', class: 'secondary', id: 'older-chats' }, 'Show older chats') : null;
    if (older) older.addEventListener('click', () => { pages += 1; refresh().catch(() => {}); });
    replace(chats, items.length ? el('ul', { class: 'chat-list' }, items) : el('p', { class: 'muted' }, 'No chats yet.'), older);
  });
  // Set before the first read, so nothing pushed during it is missed.
  shell.onMessage = () => refresh().catch(() => {});
  shell.onResync = () => refresh().catch(() => {});
  const direct = el('input', { id: 'new-direct', name: 'username', autocomplete: 'off', required: true });
  const directForm = el('form', { class: 'inline-form' },
    el('label', { for: 'new-direct' }, 'Chat with (username)'), direct,
    el('button', { type: 'submit' }, 'Start chat'));
  directForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    await shell.guard(async () => {
      const c = await post('/conversations', { kind: 'direct', with: direct.value.trim() });
      location.hash = `#/chats/${encodeURIComponent(c.id)}`;
    });
  });
  const groupTitle = el('input', { id: 'group-title', name: 'title', required: true });
  const groupMembers = el('input', { id: 'group-members', name: 'members', placeholder: 'bob, carol', required: true });
  const groupForm = el('form', { class: 'inline-form' },
    el('label', { for: 'group-title' }, 'Group name'), groupTitle,
    el('label', { for: 'group-members' }, 'Members (usernames, comma separated)'), groupMembers,
    el('button', { type: 'submit' }, 'Create group'));
  groupForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    await shell.guard(async () => {
      const members = groupMembers.value.split(',').map((m) => m.trim()).filter(Boolean);
      const c = await post('/conversations', { kind: 'group', title: groupTitle.value.trim(), members });
      location.hash = `#/chats/${encodeURIComponent(c.id)}`;
    });
  });
  await refresh();
  if (shell.viewId !== view) return;
  replace(main,
    el('h1', {}, 'Chats'),
    chats,
    el('details', {}, el('summary', {}, 'New chat'), directForm, groupForm));
}

export async function conversation(main, shell, id) {
  const view = shell.viewId;
  const c = await get(`/conversations/${encodeURIComponent(id)}`);
  await Promise.all([learnNames(id).catch(() => {}), learnApps().catch(() => {})]);
  if (shell.viewId !== view) return;
  const log = el('ol', { class: 'messages', 'aria-label': 'Messages' });
  let lastSeq = 0;
  // Whether the history is drawn: what comes after it is news.
  let drawn = false;
  const show = (m) => {
    if (m.seq <= lastSeq) return;
    lastSeq = m.seq;
    if (m.notice) {
      // The host's record of a change of members, in its words; one that
      // comes after the history was drawn (live, or caught up after a
      // lost connection) changes the view too.
      log.insertBefore(el('li', { class: 'member-change' },
        el('span', { class: 'text', dir: 'auto' }, m.text), ' ',
        el('time', { class: 'muted' }, when(m.sent_at))), log.querySelector('.pending'));
      if (drawn) changed(m);
      return;
    }
    const mine = m.sender === shell.me.id;
    const item = el('li', { class: mine ? 'message mine' : 'message' },
      el('span', { class: 'sender' }, mine ? 'You' : senderOf(m)),
      el('span', { class: 'text', dir: 'auto' }, m.text),
      el('time', { class: 'muted' }, when(m.sent_at)));
    if (m.card) {
      const open = el('button', { type: 'button', class: 'v-card' },
        el('strong', { dir: 'auto' }, m.card.title),
        m.card.description ? el('span', { dir: 'auto' }, m.card.description) : null,
        el('span', { class: 'v-card-app' }, `Opens ${appName(m.card.app_id)}`));
      open.addEventListener('click', () => shell.openCard(m.card));
      item.append(open);
    }
    // Stored messages go above the sends still waiting for their answer.
    log.insertBefore(item, log.querySelector('.pending'));
  };
  // One read at a time: a push or a new live connection while one runs
  // makes it read once more afterwards, from where it got to.
  const sync = oneAtATime(async () => {
    const follow = nearBottom();
    for (;;) {
      let page;
      try {
        page = await get(`/conversations/${encodeURIComponent(id)}/messages?after=${lastSeq}&limit=200`);
      } catch (e) {
        // Taken out while away (the notice is no longer ours to read).
        if (drawn && e instanceof ApiError && e.status === 404) out();
        throw e;
      }
      page.messages.forEach(show);
      if (page.messages.length < 200) break;
    }
    if (follow) toBottom();
    markRead();
  });
  // The conversation opens at its newest message, and follows new ones
  // while the user is reading the end (not while they scroll back).
  let opened = false;
  const nearBottom = () => !opened || window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80;
  const toBottom = () => {
    if (shell.viewId !== view) return;
    opened = true;
    window.scrollTo(0, document.documentElement.scrollHeight);
  };
  const markRead = () => {
    if (lastSeq > 0) post(`/conversations/${encodeURIComponent(id)}/read`, { seq: lastSeq }).catch(() => {});
  };
  // A message right after the last one shown is shown as it came (a send's
  // answer, a push); after a gap the view catches up from the store.
  const take = async (m) => {
    if (m.seq === lastSeq + 1) {
      const follow = nearBottom() || m.sender === shell.me.id;
      show(m);
      if (follow) toBottom();
      return true;
    }
    if (m.seq > lastSeq) await sync();
    return false;
  };
  // Enter sends, Shift+Enter starts a new line; as long as the server
  // takes (16 KiB: it answers a longer one with an error, and the text
  // comes back into the box).
  const text = el('textarea', { id: 'compose', name: 'text', autocomplete: 'off', required: true, rows: 2, maxlength: 16384 });
  const compose = el('form', { class: 'compose' }, el('label', { for: 'compose' }, 'Message (Shift+Enter for a new line)'), text, el('button', { type: 'submit' }, 'Send'));
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      compose.requestSubmit();
    }
  });
  // A send that failed, whose text went back into the box: sent again
  // unchanged, it keeps its client id, so if the server did store it (its
  // answer was what got lost) it is not stored twice.
  let failed = null;
  compose.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = text.value;
    if (!body.trim()) return;
    const clientId = failed && failed.body === body ? failed.clientId : randomId();
    failed = null;
    // Shown as sending until the server answers that it is stored (up to
    // the shell's fallback to a request); the box is free for the next.
    const waiting = el('li', { class: 'message mine pending' },
      el('span', { class: 'sender' }, 'You'),
      el('span', { class: 'text' }, body),
      el('span', { class: 'muted', role: 'status' }, 'Sending…'));
    log.append(waiting);
    text.value = '';
    let stored = null;
    await shell.guard(async () => {
      // Stored once answered (this session gets it as the answer, not as a
      // push), and read by its sender on the server.
      stored = await shell.send(id, clientId, body);
      waiting.remove();
      await take(stored);
    });
    if (!stored) {
      // Not known to be stored: the text goes back into the box unless
      // another was begun meanwhile, and the error is on screen.
      waiting.remove();
      if (!text.value) {
        text.value = body;
        failed = { body, clientId };
      }
    }
  });
  const readOnly = c.kind === 'service';
  const heading = (c) => el('h1', {}, el('span', { dir: 'auto' }, titleOf(c, shell.me)), ' ', markOf(c, shell.me));
  let top = heading(c);
  let members = c.kind === 'group' ? groupMembers(c, shell) : null;
  const footer = readOnly ? el('p', { class: 'muted' }, 'Messages from an app. You cannot reply here.') : compose;
  replace(main,
    el('p', {}, el('a', { href: '#/chats' }, '← Chats')),
    top,
    members,
    log,
    footer);
  // A change of the group's members, told live: the heading and the
  // members drawn anew, or, for whoever is out, no more sending.
  const redraw = oneAtATime(async () => {
    const now = await get(`/conversations/${encodeURIComponent(id)}`);
    await learnNames(id).catch(() => {});
    if (shell.viewId !== view || !members) return;
    const redrawn = groupMembers(now, shell);
    redrawn.open = members.open;
    members.replaceWith(redrawn);
    members = redrawn;
    const newTop = heading(now);
    top.replaceWith(newTop);
    top = newTop;
  });
  // No sending or members for whoever is out of the group.
  let isOut = false;
  const out = () => {
    if (isOut || shell.viewId !== view) return;
    isOut = true;
    footer.replaceWith(el('p', { class: 'muted', role: 'status' }, 'You are no longer in this group.'));
    if (members) members.remove();
    members = null;
    // Its members are no longer the user's to see, nor how many they are.
    const plain = el('h1', {}, el('span', { dir: 'auto' }, titleOf(c, shell.me)));
    top.replaceWith(plain);
    top = plain;
  };
  const changed = (m) => {
    const me = shell.me.id;
    if (isOut && m.notice.kind === 'added' && m.notice.member === me) {
      // Back in the group: drawn anew, with what was said meanwhile.
      location.replace(`#/chats/${encodeURIComponent(id)}?changed=${Date.now()}`);
      return;
    }
    if ((m.notice.kind === 'removed' && m.notice.member === me) || (m.notice.kind === 'left' && m.sender === me)) {
      out();
      return;
    }
    redraw().catch(() => {});
  };
  // Live: a push for this chat appends; the store is the record, so a
  // missed push is caught up by the next sync. Set before the first sync,
  // so a push that comes while it reads is not dropped.
  shell.onMessage = (m) => {
    if (m.conversation_id !== id) return;
    take(m).then((shown) => { if (shown) markRead(); }).catch(() => {});
  };
  shell.onResync = () => sync().catch(() => {});
  await sync();
  drawn = true;
  // Announced from here on: new messages, not the history just drawn.
  log.setAttribute('aria-live', 'polite');
}

/** A group's members: add someone (any member), remove someone (its
 *  owner), leave (anyone). */
function groupMembers(c, shell) {
  const me = shell.me.id;
  const items = c.members.map((id) => {
    const u = people.get(id);
    const name = u ? personName(u) : id;
    let action = null;
    if (id === me || c.owner === me) {
      action = el('button', { type: 'button', class: 'quiet' }, id === me ? 'Leave group' : 'Remove');
      action.addEventListener('click', () => shell.guard(async () => {
        await del(`/conversations/${encodeURIComponent(c.id)}/members/${encodeURIComponent(id)}`);
        location.replace(id === me ? '#/chats' : `#/chats/${encodeURIComponent(c.id)}?changed=${Date.now()}`);
      }));
    }
    return el('li', {}, el('span', {}, name, id === me ? ' (you)' : null), ' ', action);
  });
  const username = el('input', { id: 'add-member', name: 'username', autocomplete: 'off', required: true });
  const add = el('form', { class: 'inline-form' },
    el('label', { for: 'add-member' }, 'Add someone (username)'), username,
    el('button', { type: 'submit' }, 'Add'));
  add.addEventListener('submit', (e) => {
    e.preventDefault();
    shell.guard(async () => {
      await post(`/conversations/${encodeURIComponent(c.id)}/members`, { username: username.value.trim() });
      location.replace(`#/chats/${encodeURIComponent(c.id)}?changed=${Date.now()}`);
    });
  });
  return el('details', { class: 'members' },
    el('summary', {}, `Members (${c.members.length})`),
    el('ul', {}, items),
    add);
}
