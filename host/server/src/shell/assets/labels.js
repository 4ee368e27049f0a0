// Words for people: what each capability lets an app do, document types
// and fields without their hyphens, API messages as sentences, and the
// access log's entries as what happened.

import { money } from './dom.js';

/** What an app may do with each capability, completing "Allow X to …". */
const CAPABILITIES = {
  log: 'write crash reports',
  identity: 'know you by an anonymous id for this app',
  profile: 'see your name',
  storage: 'keep its own data for you',
  'shared-storage': 'keep data shared by all its users',
  notify: 'send you messages in Chats',
  payments: 'ask you for payments',
  documents: 'ask to see your documents',
  clock: 'read the date and time',
  random: 'use random numbers',
  http: 'contact its servers',
};

/** `profile` → "see your name" (an unknown name stays as it is). */
export function capabilityLabel(name) {
  return Object.hasOwn(CAPABILITIES, name) ? CAPABILITIES[name] : name;
}

/** `health-insurance` → "health insurance", `id-card` → "ID card". */
export function humanize(name) {
  return String(name || '').replace(/[-_]+/g, ' ').replace(/\bid\b/gi, 'ID').trim();
}

/** An API message as a sentence: capitalised, `code` quoted, full stop. */
export function readable(message) {
  const text = String(message || '').trim().replace(/`([^`]*)`/g, '“$1”');
  if (!text) return text;
  const first = text[0].toLocaleUpperCase() + text.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

const OUTCOMES = {
  allowed: 'allowed',
  denied: 'refused',
  'consent-required': 'waited for your answer',
  failed: 'failed',
};

/** ` of EUR 12.00`, when an entry's details name the amount. */
function sum(d) {
  const amount = Number(d.amount);
  return d.amount !== undefined && d.currency && Number.isFinite(amount) ? ` of ${money(amount, d.currency)}` : '';
}

/** An access-log entry (`{kind, capability, outcome, details}`) in words. */
export function describeEntry(e) {
  const cap = e.capability ? capabilityLabel(e.capability) : '';
  const d = e.details || {};
  switch (e.kind) {
    case 'capability.call':
      return `used its permission to ${cap}: ${Object.hasOwn(OUTCOMES, e.outcome) ? OUTCOMES[e.outcome] : e.outcome}`;
    case 'consent.grant': return `you allowed it to ${cap}`;
    case 'consent.deny': return `you did not allow it to ${cap}`;
    case 'consent.revoke': return `you took back its permission to ${cap}`;
    case 'consent.reset': return `you forgot your decision on whether it may ${cap}`;
    case 'payment.request': return `asked you for a payment${sum(d)}`;
    case 'payment.confirm':
      switch (e.outcome) {
        case 'paid': return `you confirmed a payment${sum(d)}`;
        case 'wrong-password': return `a payment${sum(d)} was not confirmed: wrong password`;
        case 'insufficient-funds': return `a payment${sum(d)} was not made: not enough money`;
        default: return `a payment${sum(d)} was not confirmed (${e.outcome})`;
      }
    case 'payment.decline': return `you declined a payment${sum(d)}`;
    case 'payment.expire': return `a payment request${sum(d)} ran out of time`;
    case 'payment.refund':
    case 'payment.refunded': return `refunded${sum(d)}`;
    case 'payment.settled': return 'was told a payment went through';
    case 'document.request': return `asked to see your ${humanize(d.type || 'document')}`;
    case 'document.disclose':
    case 'document.presented': return `you shared fields of your ${humanize(d.type || 'document')}`;
    case 'document.decline': return 'you declined to share a document';
    case 'document.expire': return 'a document request ran out of time';
    case 'card.share': return 'shared a card into a chat';
    case 'ledger.topup': return 'money was added to your wallet';
    case 'ledger.transfer': return `you sent a transfer${sum(d)}`;
    case 'app.failed': return `stopped with an error (${d.error || e.outcome})`;
    case 'http.request':
      return `contacted ${d.origin} (${d.method} ${d.path}): ${d.status || e.outcome}${d.reason ? ` — ${d.reason}` : ''}`;
    default:
      return `${e.kind}${e.capability ? ` (${e.capability})` : ''}: ${e.outcome}`;
  }
}
