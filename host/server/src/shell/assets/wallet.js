// The wallet: balances, the history of each currency, and the official
// documents the user holds (only the user sees their values here).

import { get } from './api.js';
import { el, replace, money, when } from './dom.js';
import { humanize } from './labels.js';

export async function wallet(main) {
  const [{ accounts }, { documents }] = await Promise.all([get('/wallet'), get('/me/documents')]);
  const histories = await Promise.all(accounts.map((a) => get(`/wallet/transactions?currency=${encodeURIComponent(a.currency)}&limit=50`)));
  const party = (c) => (c.kind === 'top-up' ? 'Top-up' : c.name || c.kind);
  replace(main,
    el('h1', {}, 'Wallet'),
    accounts.length
      ? el('ul', { class: 'balances' }, accounts.map((a) => el('li', {}, el('span', { class: 'balance' }, money(a.balance, a.currency)))))
      : el('p', { class: 'muted' }, 'No money yet.'),
    accounts.map((a, i) => el('section', {},
      el('h2', {}, `${a.currency} transactions`),
      el('div', { class: 'table-wrap' }, el('table', { class: 'transactions' },
        el('thead', {}, el('tr', {}, el('th', {}, 'When'), el('th', {}, 'With'), el('th', {}, 'What'), el('th', {}, 'Amount'))),
        el('tbody', {}, histories[i].transactions.map((t) => el('tr', {},
          el('td', {}, when(t.at)),
          el('td', {}, party(t.counterparty)),
          el('td', {}, t.memo || t.kind),
          el('td', { class: t.amount < 0 ? 'out' : 'in' }, money(t.amount, a.currency))))))))),
    el('h2', {}, 'Documents'),
    documents.length
      ? el('ul', { class: 'documents' }, documents.map((d) => el('li', {},
        el('h3', {}, humanize(d.type)),
        el('p', { class: 'muted' }, `Issued by ${d.issuer_name || d.issuer} · this copy usable until ${new Date(d.expires_at * 1000).toLocaleDateString()}${d.revoked ? ' · revoked' : ''}`),
        el('dl', { class: 'v-kv' }, d.claims.map((c) => el('div', {}, el('dt', {}, humanize(c.name)), el('dd', {}, c.value)))))))
      : el('p', { class: 'muted' }, 'You hold no documents.'));
}
