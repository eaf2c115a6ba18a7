// The aliasd dashboard. Plain JavaScript, no framework and no build step: it opens /v1/events
// (server-sent events), then reads the open API (/v1/aliases, /v1/services, the recent history)
// and re-reads only what an event names. The timers are the countdowns of the current phase's
// deadline and of a weighted step's hold, which read nothing from the server, and, while the Cluster view is shown, a re-read
// of /v1/cluster every few seconds (no event tells of a node's revision or of etcd's health). Every element is built with createElement and
// textContent: nothing from the API is ever parsed as HTML. Every time is shown as the API and
// aliasctl write it: RFC 3339 in UTC.
'use strict';

const TOKEN_KEY = 'aliasd.token';
const PHASES = ['warming', 'mixed', 'draining', 'stable'];
const MAX_ACTIVITY = 200;
const CLUSTER_EVERY_MS = 3000;
const VIEWS = ['aliases', 'services', 'rollouts', 'activity', 'cluster'];

const state = {
  aliases: new Map(), // name -> AliasDto
  services: [], // ServiceDto[]
  servicesDoc: null, // ServicesDto
  cluster: null, // ClusterStatus
  rollouts: new Map(), // id -> RolloutDto
  history: new Map(), // alias name -> HistoryDto[] (only for cards whose history is open)
  historyOpen: new Set(),
  activity: new Set(), // the keys of the history entries listed in Activity
  view: 'aliases',
};

// ---------------------------------------------------------------------------------------------
// Small DOM helpers.

function $(id) {
  return document.getElementById(id);
}

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' || typeof child === 'number' ? String(child) : child);
  }
  return node;
}

function badge(text, kind) {
  return el('span', { class: `badge badge-${kind || text}`, text });
}

/** `n` with the word for one or for many: "1 endpoint", "2 endpoints". */
function counted(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function list(items) {
  return items && items.length ? items.join(', ') : '–';
}

/** A time as the API gives it, RFC 3339 in UTC: the one form on the page, as aliasctl prints it
 *  and the logs write it, so a time on the page can be searched for there. In a narrow column it
 *  breaks only between the date and the time of day (copied, it is the same text). */
function timeEl(rfc3339) {
  if (!rfc3339) return el('span', { class: 'muted', text: '–' });
  const cut = rfc3339.indexOf('T') + 1;
  return el('time', { datetime: rfc3339 }, el('span', { text: rfc3339.slice(0, cut) }), el('wbr'), el('span', { text: rfc3339.slice(cut) }));
}

function human(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 90) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 90) return `${m}m ${s % 60}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

// ---------------------------------------------------------------------------------------------
// The API: reads are open; changes carry the token from sessionStorage.

class ApiError extends Error {
  constructor(status, message, problems) {
    super(message);
    this.status = status;
    this.problems = problems || [];
  }
}

// The server's clock minus this browser's, taken from each answer's Date header (whole
// seconds), so the countdowns match aliasd's deadlines on a browser whose clock is off. Within
// 2s it is taken as 0: the header's resolution is one second.
let clockOffset = 0;
function noteServerClock(response) {
  const date = Date.parse(response.headers.get('Date') || '');
  if (Number.isNaN(date)) return;
  const offset = date - Date.now();
  clockOffset = Math.abs(offset) > 2000 ? offset : 0;
}

function serverNow() {
  return Date.now() + clockOffset;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const t = token();
  if (t && method !== 'GET') headers.Authorization = `Bearer ${t}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, `the API did not answer: ${e.message}`);
  }
  noteServerClock(response);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    // The API's own words: every error it sends is {"error": ..., "problems": [...]}.
    const message = json && typeof json.error === 'string' ? json.error : text || response.statusText;
    throw new ApiError(response.status, message, json && json.problems);
  }
  return json;
}

function aliasPath(name, rest) {
  return `/v1/aliases/${encodeURIComponent(name)}${rest || ''}`;
}

function showNotice(message) {
  $('notice-text').textContent = message;
  $('notice').hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Loading and the events stream.
//
// The page is `live` only once the stream is open AND the state has been read after it opened:
// before that it says `loading`, and the alias list shows a loading line, not an empty page.
// Reads go through one queue that runs one batch at a time: a full read (aliases, services, the
// recent history) first, then the aliases, services and histories that events named meanwhile.
// A read sent after an event arrived sees that event's change, and no read's answer can land
// after (and overwrite) the answer of a later read, so no change between the first read and the
// stream's opening, or during any read, is missed.

const sync = {
  open: false, // the events stream is open
  loaded: false, // the state was read in full since the stream (re)opened
  opened: 0, // how many times the stream opened: a full read counts for the opening it began in
  all: false, // to do: a full read
  services: false, // to do: re-read the services
  names: new Set(), // to do: re-read these aliases
  running: false,
  timer: null,
  retry: 1000, // the wait before a failed full read is tried again (doubles, at most 30s)
};

/** Runs the queue after `ms` (a burst of events in that time is one batch of reads). */
function schedule(ms) {
  if (sync.running || sync.timer) return;
  sync.timer = setTimeout(runSync, ms);
}

function wantAll() {
  sync.all = true;
  schedule(0);
}

function wantAlias(name) {
  sync.names.add(name);
  schedule(50);
}

function wantServices() {
  sync.services = true;
  schedule(100);
}

async function runSync() {
  sync.timer = null;
  sync.running = true;
  try {
    while (sync.all || sync.services || sync.names.size) {
      if (sync.all) {
        // A full read covers everything asked for so far.
        sync.all = false;
        sync.services = false;
        sync.names.clear();
        const opened = sync.opened;
        if (!(await loadAll())) {
          const wait = sync.retry;
          sync.retry = Math.min(sync.retry * 2, 30000);
          setTimeout(wantAll, wait);
          return;
        }
        sync.retry = 1000;
        // A read begun before the stream (re)opened may miss what changed before the opening;
        // the full read the opening asked for comes next and makes the page live.
        if (opened === sync.opened && sync.open) sync.loaded = true;
        showStream();
        continue;
      }
      const names = [...sync.names];
      sync.names.clear();
      const reads = names.map(readAlias);
      if (sync.services) {
        sync.services = false;
        reads.push(loadServices());
      }
      await Promise.all(reads);
    }
  } finally {
    sync.running = false;
  }
}

/** Reads every alias, the services and the recent history; whether it could. */
async function loadAll() {
  try {
    const [aliases, services, recent] = await Promise.all([
      api('GET', '/v1/aliases'),
      api('GET', '/v1/services'),
      api('GET', `/v1/history?limit=${MAX_ACTIVITY}`),
    ]);
    state.aliases = new Map(aliases.map((a) => [a.name, a]));
    for (const name of [...state.history.keys()]) if (!state.aliases.has(name)) state.history.delete(name);
    setServices(services);
    renderAliases();
    fillActivity(recent);
    await Promise.all([...state.historyOpen].filter((name) => state.aliases.has(name)).map(loadHistory));
    loadCluster();
    loadRollouts();
    return true;
  } catch (e) {
    showNotice(`cannot read the aliases: ${e.message}`);
    return false;
  }
}

function setServices(doc) {
  state.servicesDoc = doc;
  state.services = doc.services;
  renderServices();
  const options = $('service-names') || document.body.appendChild(el('datalist', { id: 'service-names' }));
  options.replaceChildren(...doc.services.map((s) => el('option', { value: s.name })));
}

async function loadServices() {
  try {
    setServices(await api('GET', '/v1/services'));
  } catch (e) {
    showNotice(`cannot read the services: ${e.message}`);
  }
}

/** Re-reads one alias (and its history, if open). */
async function readAlias(name) {
  try {
    const alias = await api('GET', aliasPath(name));
    state.aliases.set(alias.name, alias);
    renderAlias(alias);
  } catch (e) {
    if (e.status === 404) {
      state.aliases.delete(name);
      renderAliases();
    } else {
      showNotice(`cannot read ${name}: ${e.message}`);
    }
  }
  if (state.historyOpen.has(name) && state.aliases.has(name)) await loadHistory(name);
}

/** The aliases that answer with (or are promoting to) `service`. */
function aliasesUsing(service) {
  const out = [];
  for (const alias of state.aliases.values()) {
    if (alias.members.some((m) => m.service === service)) out.push(alias.name);
  }
  return out;
}

function onEvent(event) {
  logActivity(event);
  switch (event.type) {
    case 'change':
      if (event.alias) wantAlias(event.alias);
      wantServices();
      break;
    case 'health':
    case 'endpoints':
      for (const name of aliasesUsing(event.service)) wantAlias(name);
      wantServices();
      break;
    case 'docker':
      wantServices();
      break;
    case 'rollout':
      state.rollouts.set(event.rollout.id, event.rollout);
      renderRollouts();
      break;
    case 'secondary':
      // A drain may wait for it: the draining aliases of its zone say so.
      for (const alias of state.aliases.values()) {
        if (alias.phase === 'draining' && `${alias.zone.replace(/\.$/, '')}.` === event.zone) {
          wantAlias(alias.name);
        }
      }
      break;
    case 'registry':
    case 'lagged':
    default:
      wantAll();
  }
}

let source = null;
let backoff = 500;
function connect() {
  source = new EventSource('/v1/events');
  source.onopen = () => {
    backoff = 500;
    sync.open = true;
    sync.opened += 1;
    sync.loaded = false;
    showStream();
    // Read everything once the stream is open, so no change falls between the read and the
    // stream; after a reconnect this also catches up on what was missed.
    wantAll();
  };
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    onEvent(event);
  };
  source.onerror = () => {
    source.close();
    sync.open = false;
    const wait = backoff;
    backoff = Math.min(backoff * 2, 30000);
    setStream(`reconnecting in ${human(wait)}`, 'stream-off');
    setTimeout(connect, wait);
  };
}

/** The badge: `live` only with the stream open and the state read since it opened. */
function showStream() {
  if (sync.open && sync.loaded) setStream('live', 'stream-on');
  else setStream('loading', 'stream-off');
}

function setStream(text, kind) {
  const node = $('stream');
  node.textContent = text;
  node.className = `stream ${kind}`;
}

// ---------------------------------------------------------------------------------------------
// Alias cards.

function matches(alias) {
  const phase = $('phase-filter').value;
  if (phase === 'moving' && alias.phase === 'stable') return false;
  if (PHASES.includes(phase) && alias.phase !== phase) return false;
  if (phase === 'warnings' && !(alias.warnings && alias.warnings.length)) return false;
  if (phase === 'unhealthy' && !alias.members.some((m) => m.endpoints.some((e) => e.health === 'unhealthy'))) return false;
  const query = $('search').value.trim().toLowerCase();
  if (!query) return true;
  const haystack = [alias.name, ...alias.targets, ...alias.answering, ...alias.endpoints];
  for (const m of alias.members) {
    haystack.push(m.service);
    for (const e of m.endpoints) if (e.container) haystack.push(e.container.name, e.container.short_id);
  }
  return haystack.some((s) => s && s.toLowerCase().includes(query));
}

function renderAliases() {
  const root = $('aliases');
  const names = [...state.aliases.keys()].sort();
  const cards = names.map((name) => card(state.aliases.get(name)));
  root.replaceChildren(...cards);
  if (!names.length) root.append(el('p', { class: 'muted', text: 'No aliases yet.' }));
  applyFilter();
}

function renderAlias(alias) {
  const old = document.querySelector(`article.card[data-alias="${CSS.escape(alias.name)}"]`);
  const fresh = card(alias);
  fresh.hidden = !matches(alias);
  if (old) {
    old.replaceWith(fresh);
  } else {
    // A new alias: into its place in name order, without rebuilding the other cards.
    const root = $('aliases');
    const after = [...root.querySelectorAll('article.card')].find((c) => c.dataset.alias > alias.name);
    if (!root.querySelector('article.card')) root.replaceChildren();
    root.insertBefore(fresh, after || null);
  }
  countShown();
}

function applyFilter() {
  for (const node of document.querySelectorAll('article.card')) {
    const alias = state.aliases.get(node.dataset.alias);
    node.hidden = !alias || !matches(alias);
  }
  countShown();
}

function countShown() {
  const all = state.aliases.size;
  const shown = document.querySelectorAll('article.card:not([hidden])').length;
  $('count').textContent = shown === all ? `${all} aliases` : `${shown} of ${all} aliases`;
}

function card(alias) {
  const node = el(
    'article',
    { class: `card phase-${alias.phase}`, dataset: { alias: alias.name } },
    el(
      'header',
      { class: 'card-head' },
      el('h2', { text: alias.name }),
      el('span', { class: `phase badge badge-${alias.phase}`, text: alias.phase }),
      el('span', { class: 'muted', text: `rev ${alias.revision} · defined by ${alias.source} · TTL ${alias.ttl}s` }),
    ),
    el(
      'p',
      { class: 'answering' },
      'answering ',
      el('strong', { text: list(alias.answering) }),
      alias.fallback ? badge(`fallback: ${alias.fallback}`, 'warn') : null,
      el('span', { class: 'muted', text: ` · ${counted(alias.endpoints.length, 'endpoint', 'endpoints')} in DNS · ${alias.srv}` }),
    ),
    el('p', { class: 'muted small' }, 'changed ', timeEl(alias.changed_at), ` by ${alias.changed_by}`),
    weightBar(alias),
    alias.warnings && alias.warnings.length ? el('ul', { class: 'warnings' }, alias.warnings.map((w) => el('li', { text: w }))) : null,
    timeline(alias),
    retired(alias),
    members(alias),
    actions(alias),
    historyBox(alias),
  );
  return node;
}

/** The running operation, or else how the last one ended (as the API says, so a reload or a
 *  restart of aliasd does not forget it), as warming → mixed → draining → stable. */
function timeline(alias) {
  const ended = alias.operation ? null : alias.last_operation;
  const op = alias.operation || ended;
  if (!op) return null;
  const current = ended ? 'stable' : alias.phase;
  const at = PHASES.indexOf(current);
  // An operation that ended otherwise than completed (aborted, timed out, rolled back) skipped
  // the phases after the last one it reached.
  const reached = ended && ended.outcome !== 'completed' ? PHASES.indexOf(ended.reached) : at;
  const stepClass = (i) => (i === at ? 'current' : i > at ? 'todo' : i <= reached ? 'done' : 'skipped');
  const steps = PHASES.map((phase, i) =>
    el('li', {
      class: stepClass(i),
      dataset: { phase },
      text: phase,
      'aria-current': i === at ? 'step' : null,
    }),
  );
  const gates = [`min healthy ${op.min_healthy === null || op.min_healthy === undefined ? 'all' : op.min_healthy}`];
  // With weighted steps, the steps replace the observation and the confirm gate.
  if (!stepped(op)) gates.push(`observe ${op.observe}`, op.confirm ? (op.confirmed ? 'confirm: given' : 'confirm: required') : 'confirm: not required');
  gates.push(`warm timeout ${op.warm_timeout}`);
  if (stepped(op) && op.gates) gates.push(...gateLimits(op.gates));
  if (op.stop_old) gates.push('stops the old containers');
  const box = el(
    'section',
    { class: ended ? 'op op-ended' : 'op' },
    el(
      'p',
      { class: 'op-title' },
      el('strong', { text: `${op.kind} #${op.id}` }),
      ` ${list(op.from)} → ${list(op.to)} by ${op.actor}`,
      op.reason ? el('span', { class: 'reason', text: ` — “${op.reason}”` }) : null,
    ),
    el('ol', { class: 'timeline' }, steps),
    ended ? null : stepsView(alias),
    el('p', { class: 'gates small' }, gates.join(' · ')),
    ended ? null : figuresView(alias),
  );
  if (ended) {
    box.append(
      el(
        'p',
        { class: 'outcome', dataset: { outcome: ended.outcome } },
        el('strong', { text: ended.outcome }),
        ' ',
        timeEl(ended.ended_at),
        ` by ${ended.ended_by}`,
        ended.ended_reason ? el('span', { class: 'reason', text: ` — ${ended.ended_reason}` }) : null,
      ),
    );
  } else {
    // While stepping, the mixed phase ends with the steps, not at a deadline of its own.
    if (op.phase_deadline && !(alias.phase === 'mixed' && stepped(op))) {
      box.append(
        el(
          'p',
          { class: 'deadline' },
          `${alias.phase} deadline `,
          timeEl(op.phase_deadline),
          ' ',
          el('span', { class: 'countdown', dataset: { deadline: op.phase_deadline } }),
        ),
      );
    }
    box.append(el('p', { class: 'waiting', dataset: { alias: alias.name } }, waitingText(alias)));
  }
  updateCountdowns(box);
  return box;
}

/** Why the current phase has not moved on yet, in words. */
function waitingText(alias) {
  const op = alias.operation;
  if (!op) return '';
  const now = serverNow();
  const deadline = op.phase_deadline ? Date.parse(op.phase_deadline) : null;
  const incoming = alias.members.filter((m) => op.to.includes(m.service));
  const endpoints = incoming.flatMap((m) => m.endpoints);
  const healthy = endpoints.filter((e) => e.health === 'healthy').length;
  switch (alias.phase) {
    case 'warming': {
      const need = op.min_healthy === null || op.min_healthy === undefined ? endpoints.length : op.min_healthy;
      return `waiting for ${counted(need, 'healthy endpoint', 'healthy endpoints')} of ${list(op.to)}: ${healthy} of ${endpoints.length} healthy now; gives up at the deadline`;
    }
    case 'mixed':
      if (alias.step) return stepWaiting(alias, now);
      if (deadline !== null && now < deadline) {
        return `both versions answer; observing ${list(op.to)} (${healthy} of ${endpoints.length} healthy)${op.confirm && !op.confirmed ? ', then waiting for a confirm' : ''}`;
      }
      if (op.confirm && !op.confirmed) return 'observation over: waiting for an explicit confirm';
      return 'observation over: moving on to draining';
    case 'draining': {
      const drain = alias.drain;
      if (!drain) return 'draining';
      const over = drain.ttl_window_over || Date.parse(drain.ttl_window_until) <= now;
      if (!over) return `${list(drain.services)} left the answers; clients may have cached them until the TTL window ends (proxy in-flight on them: ${drain.proxy_inflight})`;
      if (drain.proxy_inflight > 0) return `TTL window over; waiting for the proxy's ${counted(drain.proxy_inflight, 'open request', 'open requests')} on ${list(drain.services)}`;
      const behind = drain.secondaries_behind || [];
      if (behind.length > 0) return `TTL window over; waiting for secondary ${behind.join('; ')}`;
      const nodes = drain.nodes_behind || [];
      if (nodes.length > 0) return `TTL window over; waiting for ${nodes.join('; ')}`;
      return 'TTL window over: completing';
    }
    default:
      return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Weighted steps: the share of clients on the new version, the steps as a timeline, and what
// the front proxy measured of each version against the operation's gates.

/** Whether the API gave a value (it leaves out what it does not know). */
function given(value) {
  return value !== undefined && value !== null;
}

/** Whether an operation moves clients over in weighted steps. */
function stepped(op) {
  return !!(op && op.steps && op.steps.length);
}

/** A fraction as a percent with at most two decimals: 0.0037 → "0.37%", 0.01 → "1%". */
function percent(fraction) {
  return `${Number((fraction * 100).toFixed(2))}%`;
}

function ratioText(r) {
  return `${Number(r.toFixed(2))}×`;
}

/** The operation's gates on the proxy's figures, in words. */
function gateLimits(gates) {
  const out = [];
  if (given(gates.max_error_rate)) out.push(`error rate ≤ ${percent(gates.max_error_rate)}`);
  if (given(gates.max_latency_ratio)) out.push(`p99 ≤ ${ratioText(gates.max_latency_ratio)} the old`);
  out.push(`judged from ${counted(gates.min_requests, 'request', 'requests')}`);
  return out;
}

/** During a promotion with weighted steps: how many clients each version gets, as a bar. */
function weightBar(alias) {
  const op = alias.operation;
  if (!op || alias.weight === undefined || alias.weight === null) return null;
  const weight = alias.weight;
  const part = (side, share, names) => {
    const node = el('span', { class: `split-${side}`, title: `${share}% of clients on ${list(names)}` }, share >= 8 ? `${share}%` : '');
    // Through the CSSOM, which the page's CSP (style-src 'self') allows, unlike a style attribute.
    node.style.flexGrow = String(share);
    return node;
  };
  return el(
    'section',
    { class: 'weight', dataset: { weight } },
    el(
      'p',
      { class: 'weight-label' },
      el('strong', { class: 'weight-new', text: `${weight}% on ${list(op.to)}` }),
      el('span', { class: 'weight-old', text: `${100 - weight}% on ${list(op.from)}` }),
    ),
    el(
      'div',
      { class: 'split', role: 'img', 'aria-label': `${weight}% of clients on ${list(op.to)}, ${100 - weight}% on ${list(op.from)}` },
      part('new', weight, op.to),
      part('old', 100 - weight, op.from),
    ),
    alias.sides
      ? el('p', { class: 'sides muted small' }, `DNS answers the clients on ${list(op.to)} with ${list(alias.sides.new)}; the others with ${list(alias.sides.old)}`)
      : null,
  );
}

/** What the current step does now: `taking`, `holding`, `paused`, `confirmed` or `moving`. */
function stepState(step) {
  if (!step.effective_at) return 'taking';
  if (step.hold_until) return 'holding';
  if (step.pause) return step.confirmed ? 'confirmed' : 'paused';
  return 'moving';
}

const STEP_STATES = {
  taking: 'taking effect',
  holding: 'holding',
  paused: 'paused',
  confirmed: 'confirmed',
  moving: 'in effect',
};

/** A paused step in effect that waits for a confirm. */
function stepPaused(alias) {
  return alias.phase === 'mixed' && !!alias.step && stepState(alias.step) === 'paused';
}

/** Whether the Confirm button does something now: the confirm gate, or a paused step. */
function canConfirm(alias) {
  const op = alias.operation;
  if (!op || alias.phase !== 'mixed') return false;
  return stepPaused(alias) || (!stepped(op) && op.confirm && !op.confirmed);
}

/** What follows the current step: the next one, or the drain (a last 100% with nothing to wait
 *  for is not a step of its own: the old version leaves the answers then). */
function afterStep(alias) {
  const next = alias.operation.steps[alias.step.number];
  if (next && (next.weight < 100 || next.hold || next.pause)) return `step ${alias.step.number + 1}, ${next.weight}% of clients`;
  return 'the drain: the old version leaves the answers';
}

/** The steps as chips: done, the current one (with its state), to come. */
function stepsView(alias) {
  const op = alias.operation;
  if (!stepped(op)) return null;
  const step = alias.phase === 'mixed' ? alias.step : null;
  const now = step ? step.number : alias.phase === 'draining' ? op.steps.length + 1 : 0;
  const state = step ? stepState(step) : null;
  const chips = op.steps.map((s, i) => {
    const n = i + 1;
    const rule = s.pause ? 'pause' : s.hold ? s.hold : 'no hold';
    return el(
      'li',
      {
        class: n < now ? 'done' : n === now ? `current state-${state}` : 'todo',
        dataset: { step: n },
        'aria-current': n === now ? 'step' : null,
        title: `step ${n} of ${op.steps.length}: ${s.weight}% of clients, ${s.pause ? 'waits for a confirm' : s.hold ? `holds ${s.hold}` : 'moves on once in effect'}`,
      },
      el('span', { class: 'chip-weight', text: `${s.weight}%` }),
      el('span', { class: 'chip-rule', text: n === now ? STEP_STATES[state] : n < now ? `✓ ${rule}` : rule }),
    );
  });
  return el('div', { class: 'stepping' }, el('ol', { class: 'steps', 'aria-label': 'Weighted steps' }, chips), step ? stepLine(alias, state) : null);
}

/** The current step in one line: its state, its times, and a Confirm button when paused. */
function stepLine(alias, state) {
  const step = alias.step;
  const parts = [el('strong', { text: `Step ${step.number} of ${step.of}` }), ` · ${step.weight}% of clients · `, badge(STEP_STATES[state], `step-${state}`), ' '];
  if (state === 'taking') parts.push('since ', timeEl(step.since));
  else if (state === 'holding') parts.push('until ', timeEl(step.hold_until), ' ', el('span', { class: 'countdown', dataset: { deadline: step.hold_until } }));
  else parts.push('since ', timeEl(step.effective_at));
  const confirm = state === 'paused' ? el('button', { type: 'button', class: 'step-confirm', dataset: { action: 'confirm-step' }, onclick: () => openAction('confirm', alias.name) }, 'Confirm') : null;
  return el('div', { class: 'step-state', dataset: { state } }, el('span', {}, parts), confirm);
}

/** Why a weighted step has not moved on yet, in words. */
function stepWaiting(alias, now) {
  const step = alias.step;
  const then = afterStep(alias);
  switch (stepState(step)) {
    case 'taking':
      return `${step.weight}% of clients on ${list(alias.operation.to)} once every node and secondary serves it and the answers from before it expire (TTL ${alias.ttl}s)`;
    case 'holding':
      return Date.parse(step.hold_until) > now ? `in effect; holds ${step.hold}, then ${then}` : `hold over: moving on to ${then}`;
    case 'paused':
      return `in effect; paused until someone confirms, then ${then}`;
    case 'confirmed':
      return `confirmed: moving on to ${then}`;
    default:
      return `in effect: moving on to ${then}`;
  }
}

/** The proxy's figures of the current step, new against old, and against the gates' limits. */
function figuresView(alias) {
  const op = alias.operation;
  const step = alias.phase === 'mixed' ? alias.step : null;
  if (!stepped(op) || !step) return null;
  const gates = op.gates || {};
  const figures = step.figures;
  if (!figures) {
    if (!op.gates) return null;
    const when = step.effective_at ? 'the front proxy has not measured this step' : 'the front proxy measures from when the step takes effect';
    return el('p', { class: 'figures figures-none muted small', text: `No figures yet: ${when}.` });
  }
  const judged = (value, limit) => (given(limit) ? (value > limit ? 'over' : 'within') : '');
  const row = (side, names, f) =>
    el(
      'tr',
      { dataset: { side } },
      el('th', { scope: 'row' }, list(names), el('span', { class: 'muted small', text: ` ${side}` })),
      el('td', { text: String(f.requests) }),
      el('td', { text: String(f.errors) }),
      el('td', { class: side === 'new' ? judged(f.error_rate, gates.max_error_rate) : '', text: percent(f.error_rate) }),
      el('td', { text: given(f.p99_ms) ? `${Number(f.p99_ms.toFixed(1))} ms` : '–' }),
    );
  // Each limit with where the new version stands against it.
  const limits = [];
  if (given(figures.latency_ratio)) {
    const ratio = el('span', { class: judged(figures.latency_ratio, gates.max_latency_ratio), text: `p99 ratio ${ratioText(figures.latency_ratio)}` });
    limits.push([ratio, given(gates.max_latency_ratio) ? ` (≤ ${ratioText(gates.max_latency_ratio)})` : '']);
  } else if (given(gates.max_latency_ratio)) {
    limits.push([`p99 ≤ ${ratioText(gates.max_latency_ratio)} the old (no ratio yet)`]);
  }
  if (gates.min_requests) {
    const seen = Math.min(figures.new.requests, gates.min_requests);
    limits.push([`${seen} of ${counted(gates.min_requests, 'request', 'requests')} needed `, el('progress', { max: gates.min_requests, value: seen })]);
  }
  return el(
    'section',
    { class: 'figures', dataset: { verdict: figures.verdict } },
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        { class: 'table figures-table' },
        el(
          'thead',
          {},
          el(
            'tr',
            {},
            el('th', { title: 'what the front proxy measured of each version since the step took effect', text: 'Measured' }),
            el('th', { text: 'Requests' }),
            el('th', { text: 'Errors' }),
            el('th', {}, 'Error rate', given(gates.max_error_rate) ? el('span', { class: 'limit', text: ` ≤ ${percent(gates.max_error_rate)}` }) : null),
            el('th', { text: 'p99' }),
          ),
        ),
        el('tbody', {}, row('new', op.to, figures.new), row('old', op.from, figures.old)),
      ),
    ),
    el('p', { class: 'verdict small' }, badge(figures.verdict.replace('_', ' '), `verdict-${figures.verdict}`), ' ', el('span', { class: 'summary', text: figures.summary })),
    limits.length ? el('p', { class: 'limits small' }, ...limits.flatMap((parts, i) => (i ? [' · ', ...parts] : parts))) : null,
  );
}

function updateCountdowns(root) {
  const now = serverNow();
  for (const node of (root || document).querySelectorAll('.countdown[data-deadline]')) {
    const left = Date.parse(node.dataset.deadline) - now;
    node.textContent = left > 0 ? `in ${human(left)}` : `passed ${human(left)} ago`;
    node.classList.toggle('late', left <= 0);
  }
}

function tick() {
  updateCountdowns();
  for (const node of document.querySelectorAll('.op:not(.op-ended) .waiting[data-alias]')) {
    const alias = state.aliases.get(node.dataset.alias);
    if (alias) node.textContent = waitingText(alias);
  }
}

function retired(alias) {
  const r = alias.retired;
  if (!r) return null;
  const parts = [el('strong', { text: `retired ${list(r.services)}` }), ': '];
  if (r.safe_to_stop) parts.push('safe to stop since ', timeEl(r.safe_to_stop_at));
  else parts.push('safe to stop at ', timeEl(r.safe_to_stop_at), ' ', el('span', { class: 'countdown', dataset: { deadline: r.safe_to_stop_at } }));
  if (r.stop_old) {
    if (r.stopped_at) parts.push('; containers stopped ', timeEl(r.stopped_at));
    else parts.push('; aliasd stops their containers then');
  }
  return el('p', { class: 'retired' }, parts);
}

function members(alias) {
  return el(
    'div',
    { class: 'members' },
    alias.members.map((m) =>
      el(
        'section',
        { class: 'member', dataset: { service: m.service } },
        el(
          'h3',
          {},
          m.service,
          ' ',
          badge(m.role),
          m.answering ? badge('answering', 'on') : badge('not answering', 'off'),
          el('span', { class: 'muted small', text: ` in-flight ${m.inflight}` }),
        ),
        endpointsTable(m.endpoints),
      ),
    ),
  );
}

function endpointsTable(endpoints) {
  if (!endpoints.length) return el('p', { class: 'muted small', text: 'no endpoints' });
  return el(
    'div',
    { class: 'scroll' },
    el(
      'table',
      { class: 'table endpoints' },
      el('thead', {}, el('tr', {}, ['Endpoint', 'Health', 'Container or source', 'Last check', 'Last error'].map((h) => el('th', { text: h })))),
      el(
        'tbody',
        {},
        endpoints.map((e) =>
          el(
            'tr',
            { dataset: { endpoint: e.addr } },
            el('td', { class: 'mono', text: e.addr }),
            el('td', {}, badge(e.health), e.docker_health ? el('span', { class: 'muted small', text: ` docker: ${e.docker_health}` }) : null),
            el('td', {}, e.container ? [el('span', { text: e.container.name }), ' ', el('span', { class: 'mono muted', title: e.container.id, text: e.container.short_id })] : el('span', { class: 'muted', text: e.source })),
            el('td', {}, timeEl(e.last_check)),
            el('td', { class: 'error-text', text: e.last_error || '' }),
          ),
        ),
      ),
    ),
  );
}

function actions(alias) {
  const op = alias.operation;
  const button = (action, label, enabled) =>
    el('button', { type: 'button', dataset: { action }, disabled: !enabled, onclick: () => openAction(action, alias.name) }, label);
  return el(
    'div',
    { class: 'actions' },
    button('promote', 'Promote…', !op),
    button('confirm', 'Confirm', canConfirm(alias)),
    button('abort', 'Abort', !!op),
    button('rollback', 'Roll back…', !op),
    button('link', 'Link…', !op),
  );
}

// ---------------------------------------------------------------------------------------------
// History, with what changed in the answers at each revision.

function historyBox(alias) {
  const box = el(
    'details',
    { class: 'history', open: state.historyOpen.has(alias.name) },
    el('summary', { text: 'History' }),
    el('div', { class: 'history-body' }),
  );
  box.addEventListener('toggle', () => {
    if (box.open) {
      state.historyOpen.add(alias.name);
      loadHistory(alias.name);
    } else {
      state.historyOpen.delete(alias.name);
    }
  });
  if (state.history.has(alias.name)) fillHistory(box, alias, state.history.get(alias.name));
  return box;
}

async function loadHistory(name) {
  try {
    const entries = await api('GET', aliasPath(name, '/history'));
    state.history.set(name, entries);
    const box = document.querySelector(`article.card[data-alias="${CSS.escape(name)}"] details.history`);
    const alias = state.aliases.get(name);
    if (box && alias) fillHistory(box, alias, entries);
  } catch (e) {
    showNotice(`cannot read the history of ${name}: ${e.message}`);
  }
}

/** What `now` answers that `before` did not, and the other way round. */
function answerDiff(before, now) {
  const added = now.filter((s) => !before.includes(s));
  const removed = before.filter((s) => !now.includes(s));
  return [...added.map((s) => `+${s}`), ...removed.map((s) => `−${s}`)];
}

function fillHistory(box, alias, entries) {
  const rows = [];
  let before = null;
  for (const entry of entries) {
    const diff = before === null ? entry.answering.map((s) => `+${s}`) : answerDiff(before, entry.answering);
    before = entry.answering;
    rows.push({ entry, diff });
  }
  rows.reverse();
  const table = el(
    'table',
    { class: 'table history-table' },
    el('thead', {}, el('tr', {}, ['Rev', 'Time', 'Actor', 'Change', 'Reason', 'Answers', ''].map((h) => el('th', { text: h })))),
    el(
      'tbody',
      {},
      rows.map(({ entry, diff }) =>
        el(
          'tr',
          { dataset: { revision: entry.revision } },
          el('td', { text: entry.revision }),
          el('td', {}, timeEl(entry.at)),
          el('td', { text: entry.actor }),
          el('td', { text: `${entry.change} (${entry.phase})` }),
          el('td', { text: entry.reason || '' }),
          el('td', { class: 'diff' }, diff.length ? diff.map((d) => el('span', { class: d.startsWith('+') ? 'plus' : 'minus', text: d })) : el('span', { class: 'muted', text: 'no change' }), el('div', { class: 'muted small', text: `answering ${list(entry.answering)}` })),
          el(
            'td',
            {},
            entry.revision !== alias.revision
              ? el('button', { type: 'button', class: 'small', dataset: { action: 'rollback-to' }, disabled: !!alias.operation, onclick: () => openAction('rollback', alias.name, entry.revision) }, 'Roll back here')
              : null,
          ),
        ),
      ),
    ),
  );
  box.querySelector('.history-body').replaceChildren(entries.length ? el('div', { class: 'scroll' }, table) : el('p', { class: 'muted', text: 'No history kept.' }));
}

// ---------------------------------------------------------------------------------------------
// Services.

function renderServices() {
  const doc = state.servicesDoc;
  if (!doc) return;
  const query = $('service-search').value.trim().toLowerCase();
  const shown = doc.services.filter((s) => {
    if (!query) return true;
    const hay = [s.name, s.source, s.check, ...s.linked_by];
    for (const e of s.endpoints) hay.push(e.addr, e.container && e.container.name, e.container && e.container.short_id);
    return hay.some((h) => h && h.toLowerCase().includes(query));
  });
  $('service-count').textContent = `${shown.length} of ${doc.services.length} services`;
  $('services').tBodies[0].replaceChildren(
    ...shown.map((s) =>
      el(
        'tr',
        { dataset: { service: s.name } },
        el('td', {}, el('strong', { text: s.name }), s.warnings && s.warnings.length ? el('div', { class: 'error-text small', text: s.warnings.join('; ') }) : null),
        el('td', { text: s.source }),
        el('td', { text: s.check }),
        el('td', {}, s.endpoints.length ? el('ul', { class: 'plain' }, s.endpoints.map((e) => el('li', {}, el('span', { class: 'mono', text: e.addr }), ' ', badge(e.health), e.container ? el('span', { class: 'muted small', text: ` ${e.container.name} (${e.container.short_id})` }) : null))) : el('span', { class: 'muted', text: 'none' })),
        el('td', { text: list(s.linked_by) }),
      ),
    ),
  );
  const docker = doc.docker;
  $('docker').replaceChildren(
    ...(docker
      ? [
          `Docker: ${docker.connected ? 'connected to' : 'NOT connected to'} ${docker.endpoint}${docker.version ? ` (${docker.version})` : ''} since `,
          timeEl(docker.since),
          docker.error ? ` — ${docker.error}` : '',
        ]
      : ['Docker discovery is off.']),
  );
  // A skipped container as aliasctl names it: its name and short id (the full id on hover).
  $('problems').replaceChildren(
    ...(doc.problems || []).map((p) =>
      el(
        'li',
        { class: 'error-text', dataset: { container: p.container.id } },
        el('strong', { text: p.container.name }),
        ' (',
        el('span', { class: 'mono', title: p.container.id, text: p.container.short_id }),
        `): ${p.problem}`,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Cluster: the nodes as the node that serves this page sees them, as `aliasctl cluster` shows it.

let clusterTimer = null;

/** Reads /v1/cluster and shows it; while the Cluster view is shown, again a little later. */
async function loadCluster() {
  if (clusterTimer !== null) clearTimeout(clusterTimer);
  clusterTimer = null;
  try {
    state.cluster = await api('GET', '/v1/cluster');
    renderCluster();
  } catch (e) {
    $('cluster-summary').textContent = `cannot read the cluster: ${e.message}`;
    $('cluster-summary').className = 'error-text';
  }
  if (state.view === 'cluster') clusterTimer = setTimeout(loadCluster, CLUSTER_EVERY_MS);
}

/** A time the API gives in Unix milliseconds, in the page's one form (RFC 3339, UTC). */
function msTimeEl(ms) {
  return ms ? timeEl(new Date(ms).toISOString()) : timeEl(null);
}

function renderCluster() {
  const c = state.cluster;
  if (!c) return;
  const summary = $('cluster-summary');
  summary.className = 'muted';
  summary.replaceChildren(
    c.mode === 'single' ? 'A single node (no [cluster]: the local journal, no etcd). ' : `etcd; latest revision seen ${c.revision}. `,
    'This page is served by ',
    el('strong', { text: c.node }),
    ...(c.leader ? ['; the leader is ', el('strong', { text: c.leader }), '.'] : [el('span', { class: 'error-text', text: '; no leader is known: changes wait for one, then are refused (HTTP 503).' })]),
  );
  $('cluster').tBodies[0].replaceChildren(
    ...c.nodes.map((n) =>
      el(
        'tr',
        { dataset: { node: n.name } },
        el('td', {}, el('strong', { text: n.name }), n.name === c.node ? el('span', { class: 'muted small', text: ' (this node)' }) : null),
        el('td', { class: 'mono', text: n.api }),
        el('td', {}, badge(n.leader ? 'leader' : 'follower')),
        el('td', { text: String(n.applied_revision) }),
        el('td', { text: String(n.behind) }),
        el('td', { title: n.config_hash }, n.config_matches ? badge('same') : badge('differs')),
        el('td', {}, msTimeEl(n.started_ms)),
      ),
    ),
  );
  const etcd = c.etcd;
  $('etcd').replaceChildren(
    ...(etcd
      ? [
          `etcd: ${etcd.connected ? 'connected to' : 'UNREACHABLE at'} ${etcd.endpoints.join(', ')} since `,
          msTimeEl(etcd.since_ms),
          etcd.error ? ` (${etcd.error})` : '',
          etcd.connected ? '' : '; this node serves its last state and takes no changes',
        ]
      : ['etcd: not used (a single node).']),
  );
  $('etcd').className = etcd && !etcd.connected ? 'error-text' : 'muted';
  $('cluster-problems').replaceChildren(...c.problems.map((p) => el('li', { class: 'error-text', text: p })));
}

// ---------------------------------------------------------------------------------------------
// Rollouts: every rollout of many aliases (/v1/rollouts), kept up to date by `rollout` events.

async function loadRollouts() {
  try {
    const all = await api('GET', '/v1/rollouts');
    state.rollouts = new Map(all.map((r) => [r.id, r]));
    renderRollouts();
  } catch (e) {
    $('rollouts-summary').textContent = `cannot read the rollouts: ${e.message}`;
    $('rollouts-summary').className = 'error-text';
  }
}

function renderRollouts() {
  const all = [...state.rollouts.values()].sort((a, b) => b.id - a.id);
  const summary = $('rollouts-summary');
  summary.className = 'muted';
  summary.textContent = all.length
    ? `${counted(all.length, 'rollout', 'rollouts')}, newest first (aliasctl rollout status ID shows the same).`
    : 'No rollouts yet (aliasctl rollout start --version v2 web api).';
  $('rollouts').replaceChildren(...all.map(rolloutCard));
}

function rolloutCard(r) {
  const counts = new Map();
  for (const m of r.members) counts.set(m.state, (counts.get(m.state) || 0) + 1);
  return el(
    'article',
    { class: 'card', dataset: { rollout: String(r.id), state: r.state } },
    el(
      'h2',
      {},
      `Rollout ${r.id} `,
      badge(r.state),
      el('span', { class: 'muted small', text: ` batch ${r.batch}/${r.batches}, by ${r.actor}` }),
    ),
    el('p', {
      class: 'muted small',
      text:
        `parallelism ${r.parallelism}, delay ${r.delay}, monitor ${r.monitor}, on failure ${r.failure_action} over ${r.max_failure_ratio}; ` +
        [...counts].map(([s, n]) => `${n} ${s}`).join(', ') +
        (r.why ? ` — ${r.why}` : ''),
    }),
    el(
      'div',
      { class: 'scroll' },
      el(
        'table',
        { class: 'table' },
        el('thead', {}, el('tr', {}, ...['Alias', 'To', 'Batch', 'State', 'Started', 'Why'].map((h) => el('th', { text: h })))),
        el(
          'tbody',
          {},
          ...r.members.map((m) =>
            el(
              'tr',
              { dataset: { alias: m.alias, state: m.state } },
              el('td', { text: m.alias }),
              el('td', { class: 'mono', text: list(m.to) }),
              el('td', { text: String(m.batch + 1) }),
              el('td', {}, badge(m.state)),
              el('td', {}, m.started_at ? timeEl(m.started_at) : ''),
              el('td', { text: m.why || '' }),
            ),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Activity: the recent history when the page loads, then the events as they come.

// The changes the stream sends as `registry` events; the other history entries come as `change`.
const REGISTRY_CHANGES = new Set(['created', 'updated', 'removed', 'service_set', 'service_deleted', 'reloaded']);

/** One history entry, the same whether it came from the stream or from /v1/history. */
function entryKey(e) {
  return [e.alias, e.service || '', e.revision, e.change, e.at].join('|');
}

function activityText(event) {
  switch (event.type) {
    case 'change':
      return `${event.alias}: ${event.change} (${event.phase}), answering ${list(event.answering)} by ${event.actor}${event.reason ? ` — ${event.reason}` : ''}`;
    case 'health':
      return `${event.service} ${event.endpoint}: ${event.health}${event.error ? ` (${event.error})` : ''}`;
    case 'endpoints':
      return `${event.service}: endpoints ${list(event.endpoints)}`;
    case 'docker':
      return `Docker ${event.connected ? 'connected' : 'lost'}${event.error ? `: ${event.error}` : ''}`;
    case 'registry':
      return `${event.alias || event.service || 'config'}: ${event.change} by ${event.actor}`;
    case 'rollout':
      return `rollout ${event.rollout.id} ${event.rollout.state}: batch ${event.rollout.batch}/${event.rollout.batches}, ${counted(event.rollout.failed, 'failed alias', 'failed aliases')}`;
    case 'lagged':
      return `the stream skipped ${event.skipped} events; everything was read again`;
    case 'secondary':
      return `secondary ${event.address} of ${event.zone} serves ${event.serial ?? 'nothing yet'}${event.caught_up ? ' (caught up)' : `, the zone is at ${event.wanted}`}${event.error ? ` (${event.error})` : ''}`;
    default:
      return JSON.stringify(event);
  }
}

function activityItem(event, key) {
  const at = event.at || new Date().toISOString();
  return el('li', { dataset: { type: event.type, at, key } }, timeEl(at), ' ', activityText(event));
}

/** Keeps the newest MAX_ACTIVITY entries. */
function trimActivity(root) {
  while (root.children.length > MAX_ACTIVITY) {
    const key = root.lastElementChild.dataset.key;
    if (key) state.activity.delete(key);
    root.lastElementChild.remove();
  }
}

function logActivity(event) {
  let key;
  if (event.type === 'change' || event.type === 'registry') {
    key = entryKey(event);
    if (state.activity.has(key)) return;
    state.activity.add(key);
  }
  const root = $('activity');
  root.prepend(activityItem(event, key));
  trimActivity(root);
}

/** Adds the recent history (HistoryDto[], newest first) to what the stream has listed: each
 *  entry once, everything newest first by its time. */
function fillActivity(entries) {
  const root = $('activity');
  const fresh = [];
  for (const entry of entries) {
    const key = entryKey(entry);
    if (state.activity.has(key)) continue;
    state.activity.add(key);
    fresh.push(activityItem({ ...entry, type: REGISTRY_CHANGES.has(entry.change) ? 'registry' : 'change' }, key));
  }
  // RFC 3339 times in UTC with milliseconds sort as text. The sort is stable: what the stream
  // listed stays before history entries of the same millisecond.
  const items = [...root.children, ...fresh].sort((a, b) => (a.dataset.at < b.dataset.at ? 1 : a.dataset.at > b.dataset.at ? -1 : 0));
  root.replaceChildren(...items);
  trimActivity(root);
  $('activity-loading').hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Actions, in one dialog: promote (with its dry-run plan first), confirm, abort, rollback, link.

function field(id, label, attrs) {
  const input = el('input', Object.assign({ id, name: id }, attrs));
  return el('label', { class: attrs.type === 'checkbox' ? 'check' : '' }, attrs.type === 'checkbox' ? [input, ` ${label}`] : [label, input]);
}

function value(id) {
  const node = $(id);
  if (!node) return undefined;
  if (node.type === 'checkbox') return node.checked;
  const v = node.value.trim();
  return v === '' ? undefined : v;
}

function namesOf(text) {
  return (text || '')
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The health gates; `steps` when the form has weighted steps too, which replace observe and
 *  the confirm gate. */
const GATE_FIELDS = (steps) => [
  field('f-observe', `Observe (both answer)${steps ? ', without steps' : ''}`, { type: 'text', placeholder: 'the default, e.g. 30s' }),
  field('f-min-healthy', 'Min healthy endpoints', { type: 'number', min: 1, placeholder: 'all' }),
  field('f-warm-timeout', 'Warm timeout', { type: 'text', placeholder: 'the default, e.g. 2m' }),
  field('f-confirm', `Wait for an explicit confirm after observing${steps ? ' (without steps: a step pauses instead)' : ''}`, { type: 'checkbox' }),
];

function gateBody() {
  const body = {};
  const observe = value('f-observe');
  if (observe !== undefined) body.observe = observe;
  const min = value('f-min-healthy');
  if (min !== undefined) body.min_healthy = Number(min);
  const warm = value('f-warm-timeout');
  if (warm !== undefined) body.warm_timeout = warm;
  if (value('f-confirm')) body.confirm = true;
  return body;
}

// The step presets aliasd knows (`aliasctl promote --help` lists them too).
const STEP_PRESETS = [
  ['canary10-5m', '10% of clients for 5 minutes, then everybody'],
  ['linear10-1m', '10%, 20%, ... 90% of clients, one minute each, then everybody'],
];

/** Weighted steps as the API takes them in text (a preset, or the CLI form), and the limits on
 *  the front proxy's figures of the new version over each step. */
const STEP_FIELDS = () => [
  el(
    'label',
    {},
    'Weighted steps (optional): a preset, or weight%[:hold|:pause] separated by commas',
    el('input', { id: 'f-steps', name: 'f-steps', type: 'text', list: 'step-presets', spellcheck: 'false', placeholder: 'canary10-5m, or 10%:pause,50%:5m,100%' }),
    el('datalist', { id: 'step-presets' }, STEP_PRESETS.map(([name, what]) => el('option', { value: name, label: what }))),
    el('span', { class: 'muted small', text: `Presets: ${STEP_PRESETS.map(([name, what]) => `${name} (${what})`).join('; ')}.` }),
  ),
  el(
    'div',
    { class: 'field-row' },
    field('f-max-error-rate', 'Max error rate (0.01 is 1%)', { type: 'number', min: 0, max: 1, step: 'any', placeholder: 'none' }),
    field('f-max-latency-ratio', 'Max p99 ratio, new/old', { type: 'number', min: 1, step: 'any', placeholder: 'none' }),
    field('f-min-requests', 'Min requests to judge', { type: 'number', min: 0, step: 1, placeholder: '1' }),
  ),
];

function stepBody() {
  const body = {};
  const steps = value('f-steps');
  if (steps !== undefined) body.steps = steps;
  for (const [id, key] of [
    ['f-max-error-rate', 'max_error_rate'],
    ['f-max-latency-ratio', 'max_latency_ratio'],
    ['f-min-requests', 'min_requests'],
  ]) {
    const v = value(id);
    if (v !== undefined) body[key] = Number(v);
  }
  return body;
}

function withReason(body) {
  const reason = value('f-reason');
  if (reason !== undefined) body.reason = reason;
  return body;
}

const REASON = () => field('f-reason', 'Reason (for the history)', { type: 'text', maxlength: 1024 });

/** An action on the running operation that takes nothing but an optional reason. */
function reasonOnly(path, title, help, send) {
  return {
    title: (name) => `${title} ${name}`,
    help,
    send,
    fields: () => [REASON()],
    body: () => withReason({}),
    request: (name, body) => ['POST', aliasPath(name, path), body],
  };
}

const ACTIONS = {
  promote: {
    title: (name) => `Promote ${name}`,
    help: 'A health-gated promotion: warming (the new version must be healthy), mixed (both answer), draining (the old one leaves the answers), stable. With weighted steps, a share of the clients moves to the new version at each step while mixed. The plan is shown before anything is sent.',
    send: 'Start promotion',
    plan: true,
    fields: (alias) => [
      field('f-to', 'To (service, or several separated by commas)', { type: 'text', list: 'service-names', required: true, value: suggestTarget(alias) }),
      ...STEP_FIELDS(),
      ...GATE_FIELDS(true),
      field('f-stop-old', 'Stop the old version\u2019s containers once safe (Docker)', { type: 'checkbox' }),
      REASON(),
    ],
    body: () => {
      const body = withReason(Object.assign({ to: namesOf(value('f-to')) }, gateBody(), stepBody()));
      if (value('f-stop-old')) body.stop_old = true;
      return body;
    },
    request: (name, body) => ['POST', aliasPath(name, '/promote'), body],
    dryRun: (name, body) => ['POST', aliasPath(name, '/promote?dry_run=true'), body],
  },
  confirm: reasonOnly(
    '/confirm',
    'Confirm the promotion of',
    (alias) =>
      stepPaused(alias)
        ? `Ends the paused step ${alias.step.number} of ${alias.step.of} (${alias.step.weight}% of clients on ${list(alias.operation.to)}); next: ${afterStep(alias)}.`
        : 'Passes the confirm gate: the old version leaves the answers and drains.',
    'Confirm',
  ),
  abort: reasonOnly('/abort', 'Abort the promotion of', 'Back to the old version at once: the new one leaves the answers.', 'Abort promotion'),
  rollback: {
    title: (name) => `Roll back ${name}`,
    help: 'A promotion back to the previous targets, or to the targets of a revision of the history, through the same gates.',
    send: 'Roll back',
    fields: (alias, revision) => [
      el(
        'label',
        {},
        'To',
        el(
          'select',
          { id: 'f-revision' },
          el('option', { value: '', text: 'the targets before the last change' }),
          (state.history.get(alias.name) || [])
            .slice()
            .reverse()
            .map((h) => el('option', { value: h.revision, selected: h.revision === revision, text: `revision ${h.revision}: ${list(h.targets)} (${h.change})` })),
          revision !== undefined && !(state.history.get(alias.name) || []).some((h) => h.revision === revision)
            ? el('option', { value: revision, selected: true, text: `revision ${revision}` })
            : null,
        ),
      ),
      ...GATE_FIELDS(),
      REASON(),
    ],
    body: () => {
      const body = withReason(gateBody());
      const revision = value('f-revision');
      if (revision !== undefined) body.to_revision = Number(revision);
      return body;
    },
    request: (name, body) => ['POST', aliasPath(name, '/rollback'), body],
  },
  link: {
    title: (name) => `Link ${name}`,
    help: 'Answer with exactly these services, at once, with no gates.',
    send: 'Link',
    fields: (alias) => [field('f-targets', 'Targets (services separated by commas)', { type: 'text', list: 'service-names', required: true, value: alias.targets.join(', ') }), REASON()],
    body: () => ({ targets: namesOf(value('f-targets')) }),
    request: (name, body) => ['PUT', aliasPath(name, '/targets'), body],
  },
};

/** A service of the same family as the alias's targets that is not linked now: `web-v1` → `web-v2`. */
function suggestTarget(alias) {
  const linked = new Set(alias.targets);
  const families = new Set(alias.targets.map((t) => t.replace(/[-_]?v?\d+$/, '')));
  const candidate = state.services.find((s) => !linked.has(s.name) && families.has(s.name.replace(/[-_]?v?\d+$/, '')));
  return candidate ? candidate.name : '';
}

let current = null; // {action, name, planned}

function openAction(action, name, revision) {
  const spec = ACTIONS[action];
  const alias = state.aliases.get(name);
  if (!spec || !alias) return;
  current = { action, name, planned: false };
  $('act-title').textContent = spec.title(name);
  $('act-help').textContent = typeof spec.help === 'function' ? spec.help(alias) : spec.help;
  $('act-fields').replaceChildren(...spec.fields(alias, revision));
  $('act-plan-view').hidden = true;
  $('act-plan-view').replaceChildren();
  $('act-error').hidden = true;
  $('act-plan').hidden = !spec.plan;
  $('act-send').textContent = spec.send;
  $('act-send').disabled = !!spec.plan;
  $('action').showModal();
  if (action === 'rollback' && !state.history.has(name)) {
    // The revisions to choose from come from the history; fill them in when it arrives.
    loadHistory(name).then(() => {
      if (current && current.action === 'rollback' && current.name === name && $('action').open) {
        const select = $('f-revision');
        const chosen = select.value;
        select.replaceWith(spec.fields(alias, chosen ? Number(chosen) : revision)[0].querySelector('select'));
      }
    });
  }
}

function actionError(e) {
  const node = $('act-error');
  const lines = [e.message, ...(e.problems || [])];
  node.replaceChildren(...lines.map((l, i) => (i ? [el('br'), l] : l)).flat());
  if (e.status === 401) node.append(el('br'), el('span', { class: 'muted', text: 'Enter a valid API token at the top of the page.' }));
  node.hidden = false;
}

async function showPlan() {
  const spec = ACTIONS[current.action];
  $('act-error').hidden = true;
  try {
    const body = spec.body();
    const plan = await api(...spec.dryRun(current.name, body));
    $('act-plan-view').replaceChildren(planView(plan, body.steps));
    $('act-plan-view').hidden = false;
    current.planned = true;
    $('act-send').disabled = plan.noop;
  } catch (e) {
    actionError(e);
  }
}

/** The dry run's plan (with weighted steps, `steps` as sent, one mixed row per step). */
function planView(plan, steps) {
  const observe = steps !== undefined ? `weighted steps ${steps}` : `observe ${plan.observe}${plan.confirm ? ' then confirm' : ''}`;
  return el(
    'div',
    {},
    el('h3', { text: plan.noop ? `Nothing to do: ${plan.alias} already answers with ${list(plan.to)}` : `Plan: ${list(plan.from)} → ${list(plan.to)}` }),
    el(
      'ol',
      { class: 'plan-steps' },
      plan.steps.map((s) => el('li', { dataset: { phase: s.phase } }, el('strong', { text: s.phase }), ` answering ${list(s.services)} (${counted(s.endpoints.length, 'endpoint', 'endpoints')}) until ${s.until}`)),
    ),
    el(
      'p',
      { class: 'small' },
      `${list(plan.to)}: ${plan.healthy_now} of ${counted(plan.total, 'endpoint', 'endpoints')} healthy now, ${plan.min_healthy} needed · ${observe} · warm timeout ${plan.warm_timeout} · drain window ${plan.drain_window} (TTL ${plan.ttl}s, negative TTL ${plan.negative_ttl}s)`,
    ),
  );
}

async function send(event) {
  event.preventDefault();
  if (!current) return;
  const spec = ACTIONS[current.action];
  if (spec.plan && !current.planned) {
    await showPlan();
    return;
  }
  $('act-error').hidden = true;
  $('act-send').disabled = true;
  try {
    const reply = await api(...spec.request(current.name, spec.body()));
    const alias = reply && reply.alias ? reply.alias : reply;
    if (alias && alias.name) {
      state.aliases.set(alias.name, alias);
      renderAlias(alias);
    }
    $('action').close();
    current = null;
  } catch (e) {
    actionError(e);
    $('act-send').disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The token: asked for once, kept in this tab's sessionStorage only, sent as a Bearer header.

function showToken() {
  const set = token() !== '';
  $('token-form').hidden = set;
  $('token-set').hidden = !set;
}

function start() {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token-input').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $('token-input').value = '';
    showToken();
  });
  $('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showToken();
  });
  $('notice-close').addEventListener('click', () => {
    $('notice').hidden = true;
  });
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => {
      state.view = tab.dataset.view;
      for (const t of document.querySelectorAll('.tab')) t.setAttribute('aria-pressed', String(t === tab));
      for (const v of VIEWS) $(`view-${v}`).hidden = v !== state.view;
      if (state.view === 'cluster') loadCluster();
    });
  }
  $('search').addEventListener('input', applyFilter);
  $('phase-filter').addEventListener('change', applyFilter);
  $('service-search').addEventListener('input', renderServices);
  $('action-form').addEventListener('submit', send);
  $('act-plan').addEventListener('click', showPlan);
  $('act-cancel').addEventListener('click', () => {
    $('action').close();
    current = null;
  });
  // Any change to the form makes the plan shown stale: it must be shown again before sending.
  $('act-fields').addEventListener('input', () => {
    if (current && ACTIONS[current.action].plan && current.planned) {
      current.planned = false;
      $('act-send').disabled = true;
      $('act-plan-view').hidden = true;
    }
  });
  showToken();
  setInterval(tick, 1000);
  connect();
}

document.addEventListener('DOMContentLoaded', start);
