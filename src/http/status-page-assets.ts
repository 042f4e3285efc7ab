/**
 * What `status-page.ts` serves: the login form, the status page's HTML, its stylesheet and its
 * script (plain DOM, no framework, nothing from another origin). They are strings in a module so
 * `npm run build` carries them into `dist/` with the rest. The script puts data into the page
 * only through `textContent` and attributes, never as HTML.
 */

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (character) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[character] ?? character,
  );
}

const HEAD = `<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="stylesheet" href="/assets/status-page.css">`;

export function loginPageHtml(error?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
${HEAD}
<title>callsync · sign in</title>
</head>
<body class="login">
<main>
  <h1>callsync</h1>
  <form method="post" action="/login" class="card">
    <label for="token">Operator token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
    <p class="hint">The admin token (<code>CALLSYNC_ADMIN_TOKEN</code>, else <code>CALLSYNC_INGEST_TOKEN</code>). You stay signed in for 12 hours.</p>
    ${error === undefined ? '' : `<p class="error" role="alert">${escapeHtml(error)}</p>`}
    <button type="submit">Sign in</button>
  </form>
</main>
</body>
</html>
`;
}

export function statusPageHtml(options: { canLogOut: boolean }): string {
  const logout = options.canLogOut
    ? '<form method="post" action="/logout"><button type="submit" class="quiet">Sign out</button></form>'
    : '';
  return `<!doctype html>
<html lang="en">
<head>
${HEAD}
<title>callsync · status</title>
<script src="/assets/status-page.js" defer></script>
</head>
<body>
<header>
  <h1>callsync</h1>
  <div class="toolbar">
    <span id="updated" class="muted">loading…</span>
    <button type="button" id="refresh" class="quiet">Refresh</button>
    ${logout}
  </div>
</header>
<p id="notice" role="status" aria-live="polite" hidden></p>
<main>
  <section aria-labelledby="delivery-title">
    <h2 id="delivery-title">Delivery within target</h2>
    <div class="cards" id="delivery">
      <div class="card" data-window="lastHour"><h3>Last hour</h3><p class="big" data-field="share">—</p><p class="muted" data-field="detail"></p></div>
      <div class="card" data-window="lastDay"><h3>Last day</h3><p class="big" data-field="share">—</p><p class="muted" data-field="detail"></p></div>
      <div class="card"><h3>Failed, waiting</h3><p class="big" id="failed-waiting">—</p><p class="muted">for a retry or a dismissal</p></div>
    </div>
  </section>
  <section aria-labelledby="states-title">
    <h2 id="states-title">Calls by state</h2>
    <ul id="states" class="states"></ul>
  </section>
  <section aria-labelledby="failed-title">
    <h2 id="failed-title">Failed calls <span id="failed-count" class="muted"></span></h2>
    <p id="failed-empty" class="muted" hidden>No failed call.</p>
    <ul id="failed" class="rows"></ul>
  </section>
  <section aria-labelledby="call-title" id="call" hidden>
    <h2 id="call-title">Call <code id="call-id"></code></h2>
    <dl id="call-summary" class="summary"></dl>
    <div id="call-actions" class="actions"></div>
    <h3>Timeline</h3>
    <div class="scroll"><table id="journal"><thead><tr><th>time</th><th>event</th><th>state</th><th>detail</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section aria-labelledby="recent-title">
    <h2 id="recent-title">Recent calls</h2>
    <ul id="recent" class="rows"></ul>
  </section>
</main>
</body>
</html>
`;
}

export const STATUS_PAGE_CSS = `
:root { --fg: #1b1f24; --muted: #5b6470; --bg: #f6f7f9; --card: #fff; --line: #d9dde3; --accent: #0b57d0; --bad: #b3261e; --good: #1e7a34; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e8eb; --muted: #9aa3ad; --bg: #14171b; --card: #1d2127; --line: #333a43; --accent: #8ab4f8; --bad: #f2b8b5; --good: #8fd19e; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; justify-content: space-between; padding: .75rem 1rem; border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { font-size: 1.2rem; margin: 0; }
.toolbar { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
.toolbar form { margin: 0; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
section { margin-bottom: 1.75rem; }
h2 { font-size: 1.05rem; margin: 0 0 .6rem; }
h3 { font-size: .9rem; margin: .2rem 0 .4rem; color: var(--muted); font-weight: 600; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85em; overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: .75rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; }
.big { font-size: 1.9rem; font-weight: 650; margin: 0; }
.states { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .5rem; }
.states li { background: var(--card); border: 1px solid var(--line); border-radius: 999px; padding: .2rem .75rem; }
.states li[data-state="failed"] { border-color: var(--bad); color: var(--bad); }
.rows { list-style: none; padding: 0; margin: 0; display: grid; gap: .5rem; }
.rows li { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .6rem .8rem; display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: .3rem 1rem; align-items: center; }
.rows li .error { grid-column: 1 / -1; }
.rows .actions { justify-self: end; }
.actions { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; }
.dismiss-form { grid-column: 1 / -1; display: flex; flex-wrap: wrap; gap: .4rem; }
.dismiss-form input { flex: 1 1 14rem; }
button { font: inherit; padding: .35rem .8rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: var(--card); cursor: pointer; min-height: 2.2rem; }
button.quiet { background: transparent; color: var(--accent); }
button.link { background: none; border: none; color: var(--accent); padding: 0; min-height: 0; text-align: left; text-decoration: underline; }
button.danger { border-color: var(--bad); background: transparent; color: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
input { font: inherit; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 6px; background: var(--card); color: var(--fg); min-height: 2.2rem; }
.error { color: var(--bad); margin: 0; overflow-wrap: anywhere; }
#notice { margin: 0; padding: .5rem 1rem; background: var(--card); border-bottom: 1px solid var(--line); }
#notice.bad { color: var(--bad); }
.summary { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .2rem 1rem; margin: 0 0 .75rem; }
.summary dt { color: var(--muted); }
.summary dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: var(--card); }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td:last-child { max-width: 36rem; }
.state-done { color: var(--good); }
.state-failed { color: var(--bad); }
body.login main { max-width: 26rem; padding-top: 12vh; }
body.login form { display: grid; gap: .6rem; }
.hint { margin: 0; color: var(--muted); font-size: .9em; }
@media (max-width: 40rem) {
  body { font-size: 16px; }
  .rows li { grid-template-columns: 1fr; }
  .rows .actions { justify-self: start; }
  .summary { grid-template-columns: 1fr; }
  .summary dd { margin-bottom: .3rem; }
}
`;

/**
 * The page's script. A plain string (no template placeholders or backticks inside): it runs in
 * the browser, not in Node.
 */
export const STATUS_PAGE_JS = String.raw`
'use strict';
(function () {
  var REFRESH_INTERVAL_MS = 5000;
  var FAILED_PAGES_MAX = 10;
  var RECENT_CALLS = 20;
  var JOURNAL_DETAIL_CHARS_MAX = 400;
  var state = { openCallId: null, dismissing: null, timer: null };

  function $(id) { return document.getElementById(id); }
  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      if (name === 'text') node.textContent = attributes[name];
      else if (name === 'className') node.className = attributes[name];
      else node.setAttribute(name, attributes[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function when(iso) {
    if (!iso) return '—';
    var date = new Date(iso);
    return isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  }
  function notice(text, bad) {
    var box = $('notice');
    box.textContent = text;
    box.className = bad ? 'bad' : '';
    box.hidden = !text;
  }

  function api(method, path, body) {
    var init = { method: method, credentials: 'same-origin', headers: { 'X-Callsync-Page': '1', accept: 'application/json' } };
    if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (response) {
      if (response.status === 401) { window.location.reload(); throw new Error('signed out'); }
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (error) { data = null; }
        if (!response.ok) {
          var message = data && data.message ? data.message : 'HTTP ' + response.status;
          var failure = new Error(message);
          failure.status = response.status;
          throw failure;
        }
        return data;
      });
    });
  }

  function errorText(error) {
    if (!error) return '';
    return (error.code || 'error') + (error.status ? ' (' + error.status + ')' : '') + ': ' + (error.message || '');
  }

  function renderStatus(status) {
    ['lastHour', 'lastDay'].forEach(function (name) {
      var card = document.querySelector('[data-window="' + name + '"]');
      var window_ = status.delivery && status.delivery[name];
      var share = card.querySelector('[data-field="share"]');
      var detail = card.querySelector('[data-field="detail"]');
      if (!window_ || window_.share === null || window_.share === undefined) {
        share.textContent = '—';
        detail.textContent = 'no call finished';
      } else {
        share.textContent = (Math.floor(window_.share * 1000) / 10) + ' %';
        var latency = window_.latencySeconds;
        detail.textContent = window_.withinTarget + ' of ' + window_.finished + ' within ' + status.targetSeconds + ' s' +
          (latency ? ' · end → CRM p50 ' + latency.p50 + ' s, p95 ' + latency.p95 + ' s, p99 ' + latency.p99 + ' s' : '');
      }
    });
    $('failed-waiting').textContent = String(status.failedWaiting);
    var list = $('states');
    list.replaceChildren();
    var states = Object.keys(status.callsByState || {}).sort();
    if (states.length === 0) list.appendChild(el('li', { text: 'no calls' }));
    states.forEach(function (name) {
      list.appendChild(el('li', { 'data-state': name, text: name + ': ' + status.callsByState[name] }));
    });
  }

  function callButton(call) {
    var button = el('button', { type: 'button', className: 'link', 'data-call-id': call.callId, text: call.roomName });
    button.addEventListener('click', function () { openCall(call.callId); });
    return button;
  }

  function actionButtons(call) {
    var retry = el('button', { type: 'button', 'data-action': 'retry', text: 'Retry' });
    retry.addEventListener('click', function () { act(retry, 'retry', call.callId); });
    var dismiss = el('button', { type: 'button', className: 'danger', 'data-action': 'dismiss', text: 'Dismiss…' });
    dismiss.addEventListener('click', function () { state.dismissing = call.callId; renderDismissForms(); });
    return el('div', { className: 'actions' }, [retry, dismiss]);
  }

  function renderDismissForms() {
    document.querySelectorAll('.dismiss-form').forEach(function (form) { form.remove(); });
    if (!state.dismissing) return;
    var row = document.querySelector('#failed li[data-call-id="' + state.dismissing + '"]');
    if (!row) { state.dismissing = null; return; }
    var input = el('input', { name: 'reason', required: '', maxlength: '1000', placeholder: 'Why is this call closed?', 'aria-label': 'Reason for dismissing' });
    var submit = el('button', { type: 'submit', className: 'danger', text: 'Dismiss call' });
    var cancel = el('button', { type: 'button', className: 'quiet', text: 'Cancel' });
    var form = el('form', { className: 'dismiss-form' }, [input, submit, cancel]);
    var callId = state.dismissing;
    cancel.addEventListener('click', function () { state.dismissing = null; renderDismissForms(); });
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var reason = input.value.trim();
      if (!reason) { input.focus(); return; }
      act(submit, 'dismiss', callId, { reason: reason });
    });
    row.appendChild(form);
    input.focus();
  }

  function renderFailed(calls, more) {
    var list = $('failed');
    list.replaceChildren();
    $('failed-count').textContent = calls.length ? '(' + calls.length + (more ? '+' : '') + ')' : '';
    $('failed-empty').hidden = calls.length !== 0;
    calls.forEach(function (call) {
      var title = el('div', {}, [
        callButton(call),
        el('div', { className: 'muted', text: 'ended ' + when(call.endedAt) + ' · ' + call.callId }),
      ]);
      var row = el('li', { 'data-call-id': call.callId }, [
        title,
        actionButtons(call),
        el('p', { className: 'error', text: errorText(call.lastError) || 'no reason recorded' }),
      ]);
      list.appendChild(row);
    });
    renderDismissForms();
  }

  function renderRecent(calls) {
    var list = $('recent');
    list.replaceChildren();
    if (calls.length === 0) list.appendChild(el('li', { className: 'muted', text: 'no calls yet' }));
    calls.forEach(function (call) {
      list.appendChild(el('li', { 'data-call-id': call.callId }, [
        el('div', {}, [callButton(call), el('div', { className: 'muted', text: 'created ' + when(call.createdAt) })]),
        el('span', { className: 'state-' + call.state, 'data-field': 'state', text: call.state }),
      ]));
    });
  }

  function renderCall(call) {
    $('call').hidden = false;
    $('call-id').textContent = call.callId;
    var summary = $('call-summary');
    summary.replaceChildren();
    [
      ['state', call.state],
      ['room', call.roomName],
      ['caller', call.callerNumber || '—'],
      ['started', when(call.startedAt)],
      ['ended', when(call.endedAt) + (call.endReason ? ' (' + call.endReason + ')' : '')],
      ['outcome', call.outcome || '—'],
      ['CRM attempts', Object.keys(call.attempts || {}).map(function (step) { return step + ' ' + call.attempts[step]; }).join(', ')],
      ['retries', String(call.retries)],
      ['last error', errorText(call.lastError) || '—'],
    ].forEach(function (pair) {
      summary.appendChild(el('dt', { text: pair[0] }));
      summary.appendChild(el('dd', { 'data-field': pair[0], className: pair[0] === 'state' ? 'state-' + call.state : '', text: pair[1] }));
    });
    var actions = $('call-actions');
    actions.replaceChildren();
    if (call.state === 'failed') {
      var retry = el('button', { type: 'button', 'data-action': 'retry', text: 'Retry' });
      retry.addEventListener('click', function () { act(retry, 'retry', call.callId); });
      actions.appendChild(retry);
    }
    var body = document.querySelector('#journal tbody');
    body.replaceChildren();
    (call.journal || []).forEach(function (entry) {
      var detail = entry.detail ? JSON.stringify(entry.detail) : '';
      if (detail.length > JOURNAL_DETAIL_CHARS_MAX) detail = detail.slice(0, JOURNAL_DETAIL_CHARS_MAX) + '…';
      body.appendChild(el('tr', {}, [
        el('td', { text: when(entry.at) }),
        el('td', { text: entry.kind }),
        el('td', { text: entry.state }),
        el('td', {}, [el('code', { text: detail })]),
      ]));
    });
  }

  function openCall(callId) {
    state.openCallId = callId;
    return api('GET', '/v1/calls/' + encodeURIComponent(callId)).then(function (call) {
      renderCall(call);
      $('call').scrollIntoView({ behavior: 'smooth', block: 'start' });
    }).catch(function (error) { notice('Could not load call ' + callId + ': ' + error.message, true); });
  }

  function loadFailed() {
    var calls = [];
    function page(cursor, left) {
      var path = '/v1/calls?state=failed&limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : '');
      return api('GET', path).then(function (answer) {
        calls = calls.concat(answer.calls || []);
        if (answer.nextCursor && left > 1) return page(answer.nextCursor, left - 1);
        return Boolean(answer.nextCursor);
      });
    }
    return page(null, FAILED_PAGES_MAX).then(function (more) { return { calls: calls, more: more }; });
  }

  function refresh() {
    var parts = [
      api('GET', '/v1/status').then(renderStatus, function (error) {
        $('failed-waiting').textContent = '—';
        throw new Error('status: ' + error.message);
      }),
      state.dismissing ? Promise.resolve() : loadFailed().then(function (failed) { renderFailed(failed.calls, failed.more); }),
      api('GET', '/v1/calls?limit=' + RECENT_CALLS).then(function (answer) { renderRecent(answer.calls || []); }),
    ];
    if (state.openCallId) {
      parts.push(api('GET', '/v1/calls/' + encodeURIComponent(state.openCallId)).then(renderCall));
    }
    return Promise.allSettled(parts).then(function (results) {
      var failures = results.filter(function (result) { return result.status === 'rejected'; });
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      if (failures.length) notice('Some data could not be loaded: ' + failures.map(function (f) { return f.reason.message; }).join('; '), true);
    });
  }

  function act(button, action, callId, body) {
    button.disabled = true;
    return api('POST', '/v1/calls/' + encodeURIComponent(callId) + '/' + action, body === undefined ? {} : body)
      .then(function () {
        notice(action === 'retry' ? 'Retry of ' + callId + ' accepted; it is being delivered again.' : 'Call ' + callId + ' dismissed.', false);
        if (action === 'dismiss') state.dismissing = null;
        state.openCallId = state.openCallId || callId;
        return refresh();
      })
      .catch(function (error) {
        button.disabled = false;
        notice('Could not ' + action + ' ' + callId + ': ' + error.message, true);
      });
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(function () { refresh().then(schedule, schedule); }, REFRESH_INTERVAL_MS);
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('refresh').addEventListener('click', function () { refresh(); });
    refresh().then(schedule, schedule);
  });
})();
`;
