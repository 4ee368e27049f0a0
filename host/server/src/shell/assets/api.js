// The JSON API under /api/v1. The session is an HttpOnly, SameSite=Strict
// cookie the server sets at sign-in; the shell keeps no token of its own
// (the sign-in answer also carries it, for API clients: the shell drops it).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The body of an answer, and its `Link` header's `rel="next"` path under
 *  /api/v1 (where a list continues), if any. */
async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    // The session ended (signed out in another tab, expired, the password
    // changed): the shell leaves the signed-in pages. A failed sign-in is
    // the sign-in form's to report.
    if (response.status === 401 && path !== '/sessions') window.dispatchEvent(new Event('superapp:session-ended'));
    throw new ApiError(response.status, error.code || 'error', error.message || response.statusText);
  }
  const link = /<\/api\/v1([^>]*)>;\s*rel="next"/.exec(response.headers.get('link') || '');
  return { data, next: link ? link[1] : null };
}

export async function api(method, path, body) {
  return (await request(method, path, body)).data;
}

/** One page of a list: `{ data, next }`, `next` the path of the page after. */
export const getPage = (path) => request('GET', path);

export const get = (path) => api('GET', path);
export const post = (path, body = {}) => api('POST', path, body);
export const del = (path) => api('DELETE', path);
