// The hookrelay dashboard: a thin client of the public /api/v2 API, signed in with an API key
// kept in sessionStorage. Everything it does, curl can do.
'use strict';

const EVENT_TYPES = [
  'search-tracking.completed',
  'visibility.changed',
  'action.created',
  'action.updated',
  'action.recommendation.created',
  'action.recommendation.updated',
];
const NOTICE_TYPES = {
  'webhook.failing': 'A webhook started failing',
  'webhook.disabled': 'A webhook was disabled',
  'webhook.recovered': 'A webhook recovered',
};
const KEY_STORAGE = 'hookrelay.apiKey';
const PAGE_SIZE = 20;

const state = {
  key: null,
  projectId: null,
  scopes: [],
  webhook: null,
  cursor: null,
  editing: null,
  pollTimer: null,
  polling: false,
};

const $ = (id) => document.getElementById(id);

/** Builds an element; children are nodes or strings (always inserted as text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The service answered ${status}.`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, { method = 'GET', body } = {}) {
  // The channel header lets the audit log tell dashboard changes from API ones.
  const headers = { Authorization: `Bearer ${state.key}`, 'X-Hookrelay-Channel': 'dashboard' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(`/api/v2${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, { message: 'The service cannot be reached. Check your connection and try again.' });
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (error) { json = null; }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

const projectPath = (rest = '') => `/projects/${state.projectId}${rest}`;

/** A URL as the page shows it: query values may be credentials, so they read `***`. */
function shownUrl(url) {
  let parsed = null;
  try { parsed = new URL(url); } catch (error) { return url; }
  if (!parsed.search) return url;
  for (const key of [...new Set(parsed.searchParams.keys())]) parsed.searchParams.set(key, '***');
  return parsed.toString();
}

function formatTime(value) {
  if (!value) return '—';
  return new Date(value).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** A time to the second, with the full timestamp on hover. */
function timeEl(value) {
  if (!value) return '—';
  return el('time', { datetime: value, title: value }, formatTime(value));
}

/** Text that may break after `/`, `.` and `-`, so URLs and event names wrap between words. */
function breakable(text) {
  return text.split(/(?<=[/.-])/).flatMap((part, index) => (index ? [el('wbr'), part] : [part]));
}

function successRate(stats) {
  if (!stats || !stats.totalDeliveries) return '—';
  return `${Math.round((100 * stats.successfulDeliveries) / stats.totalDeliveries)}%`;
}

const ICONS = {
  rotate: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6',
};

/** A line icon drawn inline, so the page needs no icon font. */
function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '18');
  svg.setAttribute('height', '18');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[name]);
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '2');
  path.setAttribute('stroke-linecap', 'round');
  path.setAttribute('stroke-linejoin', 'round');
  svg.append(path);
  return svg;
}

/** Active, inactive (deleted), or disabled by endpoint health with its reason. */
function statusBadge(webhook) {
  if (!webhook.isActive) return badge('inactive', 'inactive');
  if (webhook.disabledAt) {
    const shown = badge('disabled', 'failed');
    shown.title = webhook.disabledReason || '';
    return shown;
  }
  if (webhook.pausedAt) return badge('paused', 'pending');
  return badge('active', 'active');
}

function badge(text, kind) {
  return el('span', { class: `badge ${kind}` }, text);
}

// ---- views and routing ----

function show(view) {
  for (const id of ['sign-in-view', 'list-view', 'detail-view']) $(id).hidden = id !== view;
  $('sign-out').hidden = view === 'sign-in-view';
}

async function route() {
  clearTimeout(state.pollTimer);
  if (!state.key) {
    show('sign-in-view');
    $('api-key').focus();
    return;
  }
  const match = location.hash.match(/^#\/webhooks\/([0-9a-f-]{36})$/);
  if (match) await openWebhook(match[1]);
  else await loadWebhooks();
}

// ---- sign in ----

async function signIn(key) {
  state.key = key;
  const me = await api('/me');
  state.projectId = me.data.projectId;
  state.scopes = me.data.scopes;
  $('project-label').textContent = me.data.projectName;
  $('project-label').title = `Project ${state.projectId} of ${me.data.accountName}`;
}

function signOut() {
  sessionStorage.removeItem(KEY_STORAGE);
  Object.assign(state, { key: null, projectId: null, scopes: [], webhook: null });
  $('project-label').textContent = '';
  $('api-key').value = '';
  location.hash = '';
  route();
}

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('api-key').value.trim();
  const error = $('sign-in-error');
  error.textContent = '';
  if (!/^dtk_live_[0-9A-Za-z]{32,}$/.test(key)) {
    error.textContent = 'That is not an API key: keys start with dtk_live_ followed by at least 32 letters and digits.';
    return;
  }
  try {
    await signIn(key);
    sessionStorage.setItem(KEY_STORAGE, key);
    $('api-key').value = '';
    location.hash = '#/webhooks';
    await route();
  } catch (failure) {
    state.key = null;
    error.textContent = failure.status === 401
      ? 'This key is not valid: it may be mistyped or revoked.'
      : failure.message;
  }
});

$('sign-out').addEventListener('click', signOut);

// ---- the webhook list ----

async function loadWebhooks() {
  show('list-view');
  const status = $('list-status');
  status.textContent = 'Loading…';
  try {
    const includeInactive = !$('hide-inactive').checked;
    const list = await api(projectPath(`/webhooks?includeInactive=${includeInactive}`));
    const webhooks = list.data.webhooks;
    // The list carries no stats; each webhook's own read does.
    const details = await Promise.all(
      webhooks.map((w) => api(projectPath(`/webhooks/${w.id}`)).then((d) => d.data).catch(() => w)),
    );
    renderWebhooks(details);
    status.textContent = `${webhooks.length} webhook${webhooks.length === 1 ? '' : 's'}`;
    await loadAlertEndpoints();
  } catch (failure) {
    status.textContent = failure.message;
    if (failure.status === 401) signOut();
  }
}

// ---- alert endpoints ----

async function loadAlertEndpoints() {
  const status = $('alerts-status');
  try {
    const list = await api(projectPath('/alert-endpoints'));
    const endpoints = await Promise.all(list.data.alertEndpoints.map(
      (e) => api(projectPath(`/alert-endpoints/${e.id}`)).then((d) => d.data).catch(() => e),
    ));
    $('alert-list').replaceChildren(...endpoints.map(renderAlertEndpoint));
    status.textContent = endpoints.length
      ? `${endpoints.length} alert endpoint${endpoints.length === 1 ? '' : 's'}`
      : 'No alert endpoints yet: nobody hears when a webhook breaks.';
  } catch (failure) {
    status.textContent = failure.message;
  }
}

function renderAlertEndpoint(endpoint) {
  const noticesId = `notices-${endpoint.id}`;
  const notices = el('ul', { class: 'attempts', id: noticesId, hidden: true });
  const toggle = el('button', {
    type: 'button', class: 'link', 'aria-expanded': 'false', 'aria-controls': noticesId,
  }, 'Show notices');
  toggle.addEventListener('click', async () => {
    const open = toggle.getAttribute('aria-expanded') === 'true';
    if (!open) await loadNotices(endpoint, notices);
    toggle.setAttribute('aria-expanded', String(!open));
    toggle.textContent = open ? 'Show notices' : 'Hide notices';
    notices.hidden = open;
  });
  const failing = endpoint.stats ? endpoint.stats.consecutiveFailures : 0;
  return el('li', { class: 'delivery alert-endpoint', 'data-id': endpoint.id },
    el('div', { class: 'delivery-head' },
      statusBadge(endpoint),
      el('strong', { class: 'url' }, breakable(shownUrl(endpoint.url))),
      el('span', { class: 'grow tags' }, endpoint.events.map((e) => el('span', { class: 'tag' }, e))),
      failing ? el('span', { class: 'muted' }, `${failing} failing in a row`) : null,
      toggle,
      el('button', { type: 'button', 'data-action': 'test', onclick: () => testAlertEndpoint(endpoint) }, 'Send test'),
      el('button', {
        type: 'button', class: 'icon', title: 'Rotate secret', 'data-action': 'rotate',
        'aria-label': `Rotate secret of alert endpoint ${endpoint.url}`,
        onclick: () => rotate(endpoint, 'alert-endpoints'),
      }, icon('rotate'), el('span', { class: 'label' }, 'Rotate secret')),
      el('button', {
        type: 'button', class: 'icon danger', title: 'Delete', 'data-action': 'delete',
        'aria-label': `Delete alert endpoint ${endpoint.url}`,
        onclick: () => remove(endpoint, 'alert-endpoints'),
      }, icon('trash'))),
    notices);
}

async function loadNotices(endpoint, list) {
  list.replaceChildren(el('li', { class: 'muted' }, 'Loading…'));
  try {
    const page = await api(projectPath(`/alert-endpoints/${endpoint.id}/deliveries?limit=${PAGE_SIZE}`));
    const shown = page.data.deliveries.map((d) => el('li', { class: 'attempt', 'data-event': d.event },
      badge(d.status, d.status), ' ', el('strong', {}, d.event), ' · ', timeEl(d.createdAt),
      d.lastError ? el('div', { class: 'error' }, d.lastError) : null));
    list.replaceChildren(...(shown.length ? shown : [el('li', { class: 'muted' }, 'No notices yet.')]));
  } catch (failure) {
    list.replaceChildren(el('li', { class: 'error' }, failure.message));
  }
}

async function testAlertEndpoint(endpoint) {
  const status = $('alerts-status');
  status.textContent = 'Sending a test event…';
  try {
    const answer = await api(projectPath(`/alert-endpoints/${endpoint.id}/test?wait=true`), { method: 'POST' });
    const result = answer.data.result;
    status.textContent = !result
      ? 'Test event queued; it has not been attempted yet.'
      : result.outcome === 'succeeded'
        ? `Test delivered to ${endpoint.url}: HTTP ${result.responseStatus}.`
        : `Test to ${endpoint.url} failed: ${result.error || `HTTP ${result.responseStatus}`}.`;
  } catch (failure) {
    status.textContent = failure.message;
  }
}

function openAlertForm() {
  $('alert-url').value = '';
  const choices = $('alert-choices');
  choices.replaceChildren(...Object.entries(NOTICE_TYPES).map(([type, text], index) => el('label', { for: `notice-${index}` },
    el('input', { type: 'checkbox', id: `notice-${index}`, name: 'events', value: type, checked: true }),
    `${text} (${type})`)));
  for (const id of ['alert-url-error', 'alert-events-error', 'alert-form-error']) $(id).textContent = '';
  openDialog($('alert-dialog'));
  $('alert-url').focus();
}

$('alert-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const url = $('alert-url').value.trim();
  const events = [...document.querySelectorAll('#alert-choices input:checked')].map((input) => input.value);
  const errors = checkWebhookForm(url, events, {});
  $('alert-url-error').textContent = errors.url || '';
  $('alert-events-error').textContent = errors.events ? 'Choose at least one notice.' : '';
  $('alert-form-error').textContent = '';
  if (errors.url || errors.events) return;
  try {
    const answer = await api(projectPath('/alert-endpoints'), { method: 'POST', body: { url, events } });
    closeDialog($('alert-dialog'));
    await loadAlertEndpoints();
    showSecret(answer.data, 'The alert endpoint\'s signing secret');
  } catch (failure) {
    const details = (failure.body && failure.body.details) || [];
    for (const detail of details) {
      const target = { url: 'alert-url-error', events: 'alert-events-error' }[detail.field] || 'alert-form-error';
      $(target).textContent = `${detail.message.charAt(0).toUpperCase()}${detail.message.slice(1)}.`;
    }
    if (details.length === 0) $('alert-form-error').textContent = failure.message;
  }
});

$('alert-create-button').addEventListener('click', openAlertForm);

/** What names a webhook to a person: its URL, or, for a pull webhook, that it has none. */
function webhookName(webhook) {
  return webhook.url ? shownUrl(webhook.url) : `Pull webhook …${webhook.id.slice(-8)}`;
}

/** A pull webhook's queue in words. */
function queueText(queue) {
  return `${queue.due} due, ${queue.scheduled} scheduled, ${queue.leased} leased`;
}

function renderWebhooks(webhooks) {
  const rows = $('webhook-rows');
  rows.replaceChildren();
  $('webhook-table').hidden = webhooks.length === 0;
  $('empty-state').hidden = webhooks.length !== 0;
  for (const webhook of webhooks) {
    const actions = webhook.isActive
      ? [
        el('button', {
          type: 'button', class: 'icon', title: 'Rotate secret',
          'aria-label': `Rotate secret of ${webhookName(webhook)}`, 'data-action': 'rotate',
          onclick: () => rotate(webhook),
        }, icon('rotate'), el('span', { class: 'label' }, 'Rotate secret')),
        el('button', {
          type: 'button', class: 'icon danger', title: 'Delete',
          'aria-label': `Delete ${webhookName(webhook)}`, 'data-action': 'delete',
          onclick: () => remove(webhook),
        }, icon('trash')),
      ]
      : [];
    rows.append(el('tr', { 'data-id': webhook.id },
      el('td', { class: 'url', 'data-label': 'Endpoint URL' },
        el('a', { href: `#/webhooks/${webhook.id}` }, breakable(webhookName(webhook))),
        ...(webhook.mode === 'pull'
          ? [el('div', { class: 'tags' }, el('span', { class: 'tag', 'data-mode': 'pull' }, 'pull'),
            el('span', { class: 'queue' }, queueText(webhook.queue)))]
          : [])),
      el('td', { 'data-label': 'Events' },
        el('div', { class: 'tags' }, webhook.events.map((e) => el('span', { class: 'tag' }, breakable(e))))),
      el('td', { 'data-label': 'Status' }, statusBadge(webhook)),
      el('td', { 'data-label': 'Created' }, timeEl(webhook.createdAt)),
      el('td', { class: 'rate', 'data-label': 'Success rate' }, successRate(webhook.stats)),
      el('td', { class: 'failures', 'data-label': 'Consecutive failures' },
        webhook.stats ? String(webhook.stats.consecutiveFailures) : '—'),
      el('td', { class: 'row-actions' }, actions),
    ));
  }
}

$('hide-inactive').addEventListener('change', loadWebhooks);

// ---- dialogs ----

let dialogOpener = null;

function openDialog(dialog) {
  dialogOpener = document.activeElement;
  dialog.showModal();
}

function closeDialog(dialog) {
  dialog.close();
}

for (const dialog of document.querySelectorAll('dialog')) {
  dialog.addEventListener('close', () => {
    if (dialogOpener && document.contains(dialogOpener)) dialogOpener.focus();
  });
  for (const button of dialog.querySelectorAll('[data-close]')) {
    button.addEventListener('click', () => closeDialog(dialog));
  }
}

function confirmAction(title, text, action) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = action;
  return new Promise((resolve) => {
    const ok = $('confirm-ok');
    const onOk = () => { resolve(true); closeDialog(dialog); };
    const onClose = () => { ok.removeEventListener('click', onOk); resolve(false); };
    ok.addEventListener('click', onOk, { once: true });
    dialog.addEventListener('close', onClose, { once: true });
    openDialog(dialog);
    $('confirm-ok').focus();
  });
}

/** Shows a new secret once, in both its forms (`answer` is a create or rotate answer's data). */
function showSecret(answer, title) {
  $('secret-dialog-title').textContent = title;
  $('secret-value').value = answer.secret;
  $('standard-secret-value').value = answer.standardWebhooksSecret;
  $('copy-status').textContent = '';
  openDialog($('secret-dialog'));
  $('secret-value').select();
}

// Once the dialog closes the secret leaves the page: nothing else holds it.
$('secret-dialog').addEventListener('close', () => {
  $('secret-value').value = '';
  $('standard-secret-value').value = '';
});

for (const button of document.querySelectorAll('#secret-dialog [data-copy]')) {
  button.addEventListener('click', async () => {
    const input = $(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(input.value);
      $('copy-status').textContent = 'Copied to the clipboard.';
    } catch (error) {
      input.select();
      $('copy-status').textContent = 'Select the secret and copy it with your keyboard.';
    }
  });
}

// ---- create and edit ----

function renderEventChoices(selected) {
  const choices = $('event-choices');
  choices.replaceChildren();
  EVENT_TYPES.forEach((type, index) => {
    const id = `event-${index}`;
    choices.append(el('label', { for: id },
      el('input', { type: 'checkbox', id, name: 'events', value: type, checked: selected.includes(type) }),
      type));
  });
}

function openWebhookForm(webhook) {
  state.editing = webhook;
  $('webhook-dialog-title').textContent = webhook ? 'Edit webhook' : 'Create Webhook';
  $('webhook-submit').textContent = webhook ? 'Save changes' : 'Create Webhook';
  $('webhook-url').value = webhook && webhook.url ? webhook.url : '';
  // The mode is chosen at creation; a pull webhook has no URL or push limits to edit.
  const mode = webhook ? webhook.mode : 'push';
  for (const input of document.querySelectorAll('input[name="mode"]')) input.checked = input.value === mode;
  $('mode-choices').hidden = Boolean(webhook);
  showModeFields(mode);
  $('webhook-description').value = webhook && webhook.description ? webhook.description : '';
  $('webhook-rate-limit').value = webhook && webhook.rateLimit != null ? String(webhook.rateLimit) : '';
  $('webhook-max-concurrency').value =
    webhook && webhook.maxConcurrency != null ? String(webhook.maxConcurrency) : '';
  $('webhook-filters').value = webhook
    ? Object.entries(webhook.filters || {}).map(([k, v]) => `${k} = ${v}`).join('\n') : '';
  $('webhook-metadata').value = webhook
    ? Object.entries(webhook.metadata || {}).map(([k, v]) => `${k} = ${v}`).join('\n') : '';
  // Header values are never read back whole: an edit leaves them as they are unless new ones
  // are typed, or the tick box removes them.
  $('webhook-headers').value = '';
  const hasHeaders = Boolean(webhook && Object.keys(webhook.headers || {}).length);
  $('webhook-headers').placeholder = hasHeaders
    ? `Leave empty to keep ${Object.keys(webhook.headers).join(', ')}` : 'X-Api-Key: …';
  $('headers-clear-row').hidden = !hasHeaders;
  $('webhook-headers-clear').checked = false;
  renderEventChoices(webhook ? webhook.events : []);
  for (const id of FORM_ERRORS) $(id).textContent = '';
  openDialog($('webhook-dialog'));
  (mode === 'pull' ? document.querySelector('#event-choices input') : $('webhook-url')).focus();
}

function chosenMode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function showModeFields(mode) {
  $('push-url').hidden = mode === 'pull';
  $('push-limits').hidden = mode === 'pull';
}

for (const input of document.querySelectorAll('input[name="mode"]')) {
  input.addEventListener('change', () => showModeFields(chosenMode()));
}

const FORM_ERRORS = ['url-error', 'events-error', 'filters-error', 'description-error', 'metadata-error', 'headers-error', 'rate-limit-error', 'max-concurrency-error', 'form-error'];
const FIELD_ERRORS = {
  url: 'url-error', events: 'events-error', filters: 'filters-error', description: 'description-error',
  metadata: 'metadata-error', headers: 'headers-error',
  rateLimit: 'rate-limit-error', maxConcurrency: 'max-concurrency-error',
};

/** Lines of `key <separator> value` as an object; a line without the separator is an error. */
function pairs(text, separator, what) {
  const result = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf(separator);
    if (at <= 0) return { error: `Write each ${what} as a line of name ${separator.trim()} value.` };
    result[line.slice(0, at).trim()] = line.slice(at + separator.length).trim();
  }
  return { value: result };
}

/** An optional whole number within bounds: null when empty, NaN when not acceptable. */
function optionalWhole(text, low, high) {
  if (text.trim() === '') return null;
  const number = Number(text);
  return Number.isInteger(number) && number >= low && number <= high ? number : NaN;
}

/** Mirrors the API's rules, so most mistakes are caught before a round trip. */
function checkWebhookForm(url, events, limits, mode = 'push') {
  const errors = {};
  if (mode === 'pull') {
    if (events.length === 0) errors.events = 'Choose at least one event.';
    return errors;
  }
  if (!url) errors.url = 'Enter the endpoint URL.';
  else if (url.length > 2048) errors.url = 'The URL must be at most 2048 characters.';
  else {
    let parsed = null;
    try { parsed = new URL(url); } catch (error) { parsed = null; }
    if (!parsed) errors.url = 'Enter an absolute URL, such as https://your-app.com/webhooks.';
    else if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') errors.url = 'The URL must use https.';
  }
  if (events.length === 0) errors.events = 'Choose at least one event.';
  if (Number.isNaN(limits.rateLimit)) errors.rateLimit = 'Enter a whole number from 1 to 10000, or leave it empty.';
  if (Number.isNaN(limits.maxConcurrency)) errors.maxConcurrency = 'Enter a whole number from 1 to 256, or leave it empty.';
  return errors;
}

$('webhook-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const url = $('webhook-url').value.trim();
  const events = [...document.querySelectorAll('#event-choices input:checked')].map((input) => input.value);
  const limits = {
    rateLimit: optionalWhole($('webhook-rate-limit').value, 1, 10000),
    maxConcurrency: optionalWhole($('webhook-max-concurrency').value, 1, 256),
  };
  const editing = state.editing;
  const mode = editing ? editing.mode : chosenMode();
  const errors = checkWebhookForm(url, events, limits, mode);
  const filters = pairs($('webhook-filters').value, '=', 'filter');
  const metadata = pairs($('webhook-metadata').value, '=', 'metadata entry');
  if (filters.error) errors.filters = filters.error;
  const headers = pairs($('webhook-headers').value, ':', 'header');
  if (metadata.error) errors.metadata = metadata.error;
  if (headers.error) errors.headers = headers.error;
  for (const [field, id] of Object.entries(FIELD_ERRORS)) $(id).textContent = errors[field] || '';
  $('form-error').textContent = '';
  if (errors.url) { $('webhook-url').focus(); return; }
  if (errors.events) { document.querySelector('#event-choices input').focus(); return; }
  if (errors.filters) { $('webhook-filters').focus(); return; }
  if (errors.metadata) { $('webhook-metadata').focus(); return; }
  if (errors.headers) { $('webhook-headers').focus(); return; }
  if (errors.rateLimit) { $('webhook-rate-limit').focus(); return; }
  if (errors.maxConcurrency) { $('webhook-max-concurrency').focus(); return; }
  const description = $('webhook-description').value.trim();
  const newHeaders = Object.keys(headers.value).length !== 0;
  const clearHeaders = Boolean(editing) && $('webhook-headers-clear').checked;
  // On an edit, an emptied field removes the description or metadata; on a create it is left
  // out. Headers change only when new ones are typed or the removal is ticked.
  const body = {
    ...(mode === 'pull' ? (editing ? {} : { mode }) : { url, ...limits }),
    events,
    ...(description || editing ? { description: description || null } : {}),
    ...(Object.keys(filters.value).length || editing ? { filters: filters.value } : {}),
    ...(Object.keys(metadata.value).length || editing ? { metadata: metadata.value } : {}),
    ...(newHeaders ? { headers: headers.value } : clearHeaders ? { headers: {} } : {}),
  };
  try {
    const answer = editing
      ? await api(projectPath(`/webhooks/${editing.id}`), { method: 'PATCH', body })
      : await api(projectPath('/webhooks'), { method: 'POST', body });
    closeDialog($('webhook-dialog'));
    if (editing) await openWebhook(editing.id);
    else {
      await loadWebhooks();
      showSecret(answer.data, 'Your new signing secret');
    }
  } catch (failure) {
    const details = (failure.body && failure.body.details) || [];
    for (const detail of details) {
      const target = FIELD_ERRORS[detail.field] || 'form-error';
      $(target).textContent = `${detail.message.charAt(0).toUpperCase()}${detail.message.slice(1)}.`;
    }
    if (details.length === 0) $('form-error').textContent = failure.message;
  }
});

$('create-button').addEventListener('click', () => openWebhookForm(null));
$('edit-button').addEventListener('click', () => openWebhookForm(state.webhook));

// ---- rotate and delete ----

/** Rotates the secret of a webhook, or of an alert endpoint with `kind` 'alert-endpoints'. */
async function rotate(webhook, kind = 'webhooks') {
  const sure = await confirmAction(
    'Rotate the signing secret?',
    `A new secret is generated for ${webhookName(webhook)}. The old secret stops working at once: deliveries signed from now on verify only with the new one.`,
    'Rotate secret',
  );
  if (!sure) return;
  try {
    const answer = await api(projectPath(`/${kind}/${webhook.id}/rotate-secret`), { method: 'POST' });
    showSecret(answer.data, 'Your new signing secret');
    if (state.webhook && state.webhook.id === webhook.id) await openWebhook(webhook.id, { keepLog: true });
  } catch (failure) {
    alertStatus(failure.message);
  }
}

/** Deletes a webhook, or an alert endpoint with `kind` 'alert-endpoints'. */
async function remove(webhook, kind = 'webhooks') {
  const what = kind === 'webhooks' ? 'webhook' : 'alert endpoint';
  const sure = await confirmAction(
    `Delete this ${what}?`,
    `${webhookName(webhook)} will receive no more ${kind === 'webhooks' ? 'events' : 'notices'} and its pending deliveries are cancelled.`,
    `Delete ${what}`,
  );
  if (!sure) return;
  try {
    await api(projectPath(`/${kind}/${webhook.id}`), { method: 'DELETE' });
    if (location.hash.startsWith('#/webhooks/')) location.hash = '#/webhooks';
    else await loadWebhooks();
  } catch (failure) {
    alertStatus(failure.message);
  }
}

function alertStatus(message) {
  const target = $('detail-view').hidden ? $('list-status') : $('detail-status');
  target.textContent = message;
}

$('detail-rotate').addEventListener('click', () => rotate(state.webhook));
$('detail-delete').addEventListener('click', () => remove(state.webhook));

// ---- one webhook and its delivery log ----

async function openWebhook(id, { keepLog = false } = {}) {
  show('detail-view');
  try {
    const answer = await api(projectPath(`/webhooks/${id}`));
    state.webhook = answer.data;
  } catch (failure) {
    $('detail-status').textContent = failure.message;
    return;
  }
  const w = state.webhook;
  $('detail-title').replaceChildren(...breakable(webhookName(w)));
  const facts = [
    ['Status', w.disabledAt && w.isActive
      ? [statusBadge(w), ` since ${formatTime(w.disabledAt)}: ${w.disabledReason}. Saving an edit re-enables it.`]
      : w.pausedAt
        ? [statusBadge(w), ` since ${formatTime(w.pausedAt)}: events queue up and go out, oldest first, when it resumes.`]
        : statusBadge(w)],
    ...(w.description ? [['Description', w.description]] : []),
    ...(w.mode === 'pull'
      ? [['Mode', 'Pull: deliveries wait for a poller (hookrelay listen, or GET …/poll)'],
        ['Queue', w.queue ? queueText(w.queue) : '—']]
      : []),
    ['Events', w.events.join(', ')],
    ['Filters', Object.keys(w.filters || {}).length
      ? Object.entries(w.filters).map(([k, v]) => `${k} = ${v}`).join('; ') : 'none'],
    ['Secret', w.secretPreview],
    ...(Object.keys(w.metadata || {}).length
      ? [['Metadata', Object.entries(w.metadata).map(([k, v]) => `${k} = ${v}`).join('; ')]] : []),
    ...(Object.keys(w.headers || {}).length
      ? [['Headers', Object.entries(w.headers).map(([k, v]) => `${k}: ${v}`).join('; ')]] : []),
    ['Created', timeEl(w.createdAt)],
    ['Deliveries', `${w.stats.totalDeliveries} attempts, ${successRate(w.stats)} successful, ${w.stats.consecutiveFailures} failing in a row`],
    ['Webhook id', w.id],
  ];
  $('detail-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  for (const id2 of ['pause-button', 'recover-button', 'test-button', 'edit-button', 'detail-rotate', 'detail-delete']) $(id2).disabled = !w.isActive;
  $('pause-button').textContent = w.pausedAt ? 'Resume' : 'Pause';
  if (!keepLog) {
    $('detail-status').textContent = '';
    await loadDeliveries(true);
  }
}

async function loadDeliveries(reset) {
  if (reset) {
    state.cursor = null;
    $('delivery-list').replaceChildren();
  }
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const status = $('status-filter').value;
  if (status) params.set('status', status);
  if (state.cursor) params.set('cursor', state.cursor);
  try {
    const page = await api(projectPath(`/webhooks/${state.webhook.id}/deliveries?${params}`));
    for (const delivery of page.data.deliveries) $('delivery-list').append(renderDelivery(delivery));
    state.cursor = page.data.nextCursor;
    $('load-more').hidden = !state.cursor;
    $('log-empty').hidden = $('delivery-list').children.length !== 0;
    schedulePoll();
  } catch (failure) {
    $('detail-status').textContent = failure.message;
  }
}

/**
 * While a delivery is pending, refresh the log every second so its outcome shows up; once
 * none is, refresh the webhook's stats too.
 */
function schedulePoll() {
  clearTimeout(state.pollTimer);
  if ($('detail-view').hidden) return;
  const pending = document.querySelector('#delivery-list .badge.pending');
  if (pending) {
    state.polling = true;
    state.pollTimer = setTimeout(() => loadDeliveries(true), 1000);
  } else if (state.polling) {
    state.polling = false;
    openWebhook(state.webhook.id, { keepLog: true });
  }
}

function renderDelivery(delivery) {
  const attemptsId = `attempts-${delivery.id}`;
  const item = el('li', { class: 'delivery', 'data-id': delivery.id, 'data-status': delivery.status });
  const toggle = el('button', {
    type: 'button', class: 'link', 'aria-expanded': 'false', 'aria-controls': attemptsId,
  }, 'Show attempts');
  const attempts = el('ol', { class: 'attempts', id: attemptsId, hidden: true });
  toggle.addEventListener('click', async () => {
    const open = toggle.getAttribute('aria-expanded') === 'true';
    if (!open) await loadAttempts(delivery.id, attempts);
    toggle.setAttribute('aria-expanded', String(!open));
    toggle.textContent = open ? 'Show attempts' : 'Hide attempts';
    attempts.hidden = open;
  });
  const retry = delivery.status === 'failed'
    ? el('button', { type: 'button', 'data-action': 'retry', onclick: () => retryDelivery(delivery.id) }, 'Retry')
    : null;
  const last = delivery.lastError || (delivery.lastResponseStatus ? `HTTP ${delivery.lastResponseStatus}` : '');
  item.append(
    el('div', { class: 'delivery-head' },
      badge(delivery.status, delivery.status),
      el('strong', {}, delivery.event),
      el('span', { class: 'grow muted' }, timeEl(delivery.createdAt)),
      el('code', { class: 'muted delivery-id', title: 'Delivery id' }, delivery.id),
      el('span', { class: 'muted' }, `${delivery.attemptCount} attempt${delivery.attemptCount === 1 ? '' : 's'}`),
      last ? el('span', { class: 'muted' }, last) : null,
      toggle,
      retry),
    attempts,
  );
  return item;
}

async function loadAttempts(deliveryId, list) {
  list.replaceChildren(el('li', { class: 'muted' }, 'Loading…'));
  try {
    const answer = await api(projectPath(`/deliveries/${deliveryId}`));
    const attempts = answer.data.attempts;
    const shown = attempts.length ? attempts.map((a) => el('li', { class: 'attempt' },
      el('div', {},
        `#${a.number} · `, timeEl(a.startedAt), ` · ${a.durationMs} ms · `,
        a.responseStatus ? `HTTP ${a.responseStatus}` : 'no response'),
      a.error ? el('div', { class: 'error' }, a.error) : null,
      a.responseBody ? el('pre', {}, a.responseBody) : null,
      a.requestHeaders ? el('pre', { class: 'headers' },
        Object.entries(a.requestHeaders).map(([k, v]) => `${k}: ${v}`).join('\n')) : null))
      : [el('li', { class: 'muted' }, 'No attempt yet.')];
    list.replaceChildren(sentPayload(deliveryId, answer.data.payload), ...shown);
  } catch (failure) {
    list.replaceChildren(el('li', { class: 'error' }, failure.message));
  }
}

/** The delivery id and the body as sent, pretty-printed, with a button that copies it. */
function sentPayload(deliveryId, payload) {
  let pretty = payload;
  try { pretty = JSON.stringify(JSON.parse(payload), null, 2); } catch (error) { pretty = payload; }
  const status = el('span', { class: 'muted', role: 'status' });
  const copy = el('button', {
    type: 'button', class: 'link', 'data-action': 'copy-payload',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(payload);
        status.textContent = 'Copied.';
      } catch (error) {
        status.textContent = 'Select the text to copy it.';
      }
    },
  }, 'Copy payload');
  return el('li', { class: 'payload' },
    el('div', {}, `Delivery ${deliveryId} · `, copy, ' ', status),
    el('pre', {}, pretty));
}

async function retryDelivery(deliveryId) {
  try {
    await api(projectPath(`/deliveries/${deliveryId}/retry`), { method: 'POST' });
    $('detail-status').textContent = 'Delivery queued again.';
    await loadDeliveries(true);
  } catch (failure) {
    $('detail-status').textContent = failure.message;
  }
}

$('pause-button').addEventListener('click', async () => {
  const resume = Boolean(state.webhook.pausedAt);
  try {
    await api(projectPath(`/webhooks/${state.webhook.id}`), {
      method: 'PATCH',
      body: { enabled: resume },
    });
    await openWebhook(state.webhook.id, { keepLog: true });
    $('detail-status').textContent = resume ? 'Resumed: its queued deliveries go out now.' : 'Paused: events queue up until you resume.';
  } catch (failure) {
    $('detail-status').textContent = failure.message;
  }
});

/** Failed deliveries of the last day come back after a preview of how many there are. */
$('recover-button').addEventListener('click', async () => {
  const path = projectPath(`/webhooks/${state.webhook.id}/recover`);
  const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  try {
    const preview = await api(path, { method: 'POST', body: { since, dryRun: true } });
    const { matched } = preview.data;
    if (matched === 0) {
      $('detail-status').textContent = 'No failed deliveries in the last 24 hours.';
      return;
    }
    const sure = await confirmAction(
      'Recover failed deliveries?',
      `${matched} failed deliver${matched === 1 ? 'y' : 'ies'} of the last 24 hours will be sent again, oldest first, under their original delivery ids.`,
      'Recover',
    );
    if (!sure) return;
    const done = await api(path, { method: 'POST', body: { since } });
    $('detail-status').textContent = `Queued ${done.data.queued} deliveries again.`;
    await loadDeliveries(true);
  } catch (failure) {
    $('detail-status').textContent = failure.message;
  }
});

$('test-button').addEventListener('click', async () => {
  try {
    $('detail-status').textContent = 'Sending a test event…';
    const answer = await api(projectPath(`/webhooks/${state.webhook.id}/test?wait=true`), { method: 'POST' });
    const result = answer.data.result;
    if (!result) {
      $('detail-status').textContent = 'Test event queued; it has not been attempted yet.';
    } else if (result.outcome === 'succeeded') {
      $('detail-status').textContent = `Test delivered: HTTP ${result.responseStatus} in ${result.durationMs} ms.`;
    } else {
      const why = result.error || `HTTP ${result.responseStatus}`;
      $('detail-status').textContent = `Test failed: ${why} (after ${result.durationMs} ms).`;
    }
    await loadDeliveries(true);
  } catch (failure) {
    $('detail-status').textContent = failure.message;
  }
});

$('status-filter').addEventListener('change', () => loadDeliveries(true));
$('refresh-log').addEventListener('click', () => loadDeliveries(true));
$('load-more').addEventListener('click', () => loadDeliveries(false));

// ---- start ----

window.addEventListener('hashchange', route);

(async () => {
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    try {
      await signIn(saved);
    } catch (failure) {
      sessionStorage.removeItem(KEY_STORAGE);
      state.key = null;
    }
  }
  await route();
})();
