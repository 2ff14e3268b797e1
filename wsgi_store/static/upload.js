// wsgi-store upload page: a small tus 1.0.0 client of its own (no library).
//
// Each file is created with POST /uploads, then sent in chunks with PATCH
// (XMLHttpRequest, for upload progress events). The upload URL is kept in
// localStorage under the file's name, size and lastModified, so that picking
// the same file after a reload or a lost connection goes on at the offset the
// server reports (HEAD). The bearer token, when the store needs one, lives in
// sessionStorage (this tab only) and is asked for after a 401.

const TUS = '1.0.0';
const KEY_PREFIX = 'wsgi-store:tus:';
const TOKEN_KEY = 'wsgi-store:token';
const RETRY_SECONDS = [1, 2, 4, 8, 15];
const app = document.getElementById('app');
const endpoint = new URL(app.dataset.uploads, location.href);
const filesBase = new URL(app.dataset.files, location.href);
// ?chunk=BYTES lets a slow link (or a test) use smaller PATCH requests.
const CHUNK = Math.max(1024, Number(new URL(location.href).searchParams.get('chunk')) || 8 * 1024 * 1024);
const $ = (id) => document.getElementById(id);
const entries = [];

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

function headers(extra) {
  const h = { 'Tus-Resumable': TUS, ...extra };
  if (token()) h.Authorization = 'Bearer ' + token();
  return h;
}

function fingerprint(file) {
  return KEY_PREFIX + JSON.stringify([file.name, file.size, file.lastModified]);
}

function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function sizeText(n) {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

class HttpError extends Error {
  constructor(status, detail) { super(detail || 'HTTP ' + status); this.status = status; }
}

// A lost connection, a busy upload (423) or a server between restarts (5xx).
function retryable(err) {
  return !(err instanceof HttpError) || err.status === 423 || err.status >= 500;
}

async function problem(resp) {
  try {
    const body = await resp.json();
    return body.detail || body.title || '';
  } catch { return ''; }
}

function el(tag, attrs = {}, text = '') {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

class Entry {
  constructor(file) {
    this.file = file;
    this.key = fingerprint(file);
    this.url = null;
    this.offset = 0;
    this.paused = false;
    this.running = false;
    this.done = false;
    this.xhr = null;
    this.retries = 0;
    this.build();
  }

  build() {
    const li = el('li');
    li.append(el('div', { class: 'name' }, this.file.name));
    this.bar = el('progress', { max: '100', value: '0', 'aria-label': 'Progress of ' + this.file.name });
    this.status = el('div', { class: 'status', role: 'status' }, 'Waiting');
    const actions = el('div', { class: 'actions' });
    this.pauseButton = el('button', { type: 'button' }, 'Pause');
    this.pauseButton.addEventListener('click', () => this.toggle());
    actions.append(this.pauseButton);
    this.result = el('div', { class: 'result', hidden: '' });
    li.append(this.bar, this.status, actions, this.result);
    this.li = li;
    $('queue').append(li);
    $('queue-empty').hidden = true;
  }

  say(text, kind = '') {
    this.status.textContent = text;
    this.status.className = 'status' + (kind ? ' ' + kind : '');
  }

  show(sent) {
    const size = this.file.size;
    this.bar.value = size ? Math.floor((sent / size) * 100) : 100;
    this.bar.setAttribute('data-bytes', String(sent));
  }

  toggle() {
    if (this.done) return;
    if (this.paused || !this.running) { this.paused = false; this.start(); return; }
    this.paused = true;
    if (this.xhr) this.xhr.abort();
  }

  async start() {
    if (this.running || this.done) return;
    this.running = true;
    this.paused = false;
    this.pauseButton.textContent = 'Pause';
    try {
      await this.run();
    } catch (err) {
      this.failed(err);
    } finally {
      this.running = false;
      this.xhr = null;
      if (!this.done) this.pauseButton.textContent = 'Resume';
    }
  }

  async run() {
    if (!this.url) await this.locate();
    let stale = false; // after a failure: ask the server's offset first
    while (!this.done && !this.paused) {
      try {
        if (stale) await this.head();
        stale = false;
        if (!this.done) await this.patch();
        this.retries = 0;
      } catch (err) {
        if (this.paused) break;
        if (!retryable(err) || this.retries >= RETRY_SECONDS.length) throw err;
        const wait = RETRY_SECONDS[this.retries++];
        this.say(`Connection lost; trying again in ${wait} s`, 'error');
        await new Promise((r) => setTimeout(r, wait * 1000));
        stale = true;
      }
    }
    if (this.paused && !this.done) this.say(`Paused at ${sizeText(this.offset)}`);
  }

  // A stored URL from before (same name, size and date): ask where it stands.
  async locate() {
    const stored = localStorage.getItem(this.key);
    if (stored) {
      this.url = JSON.parse(stored).url;
      try {
        await this.head();
        if (!this.done) this.say(`Resumed at ${sizeText(this.offset)}`);
        this.resumedAt = this.offset;
        this.li.setAttribute('data-resumed-at', String(this.offset));
        return;
      } catch (err) {
        if (!(err instanceof HttpError) || err.status === 401) throw err;
        localStorage.removeItem(this.key); // expired or gone: start again
        this.url = null;
      }
    }
    await this.create();
  }

  async create() {
    const empty = this.file.size === 0;
    const extra = {
      'Upload-Length': String(this.file.size),
      'Upload-Metadata': `filename ${b64(this.file.name)}` +
        (this.file.type ? `,filetype ${b64(this.file.type)}` : ''),
    };
    // An empty file is complete at creation (creation-with-upload, no bytes).
    if (empty) extra['Content-Type'] = 'application/offset+octet-stream';
    const resp = await fetch(endpoint, { method: 'POST', headers: headers(extra), body: empty ? new Blob([]) : null });
    if (resp.status !== 201) throw new HttpError(resp.status, await problem(resp));
    this.url = new URL(resp.headers.get('Location'), endpoint).href;
    localStorage.setItem(this.key, JSON.stringify({
      url: this.url, name: this.file.name, size: this.file.size, saved: Date.now(),
    }));
    refreshPending();
    this.offset = 0;
    this.finishFrom(resp.headers);
  }

  async head() {
    const resp = await fetch(this.url, { method: 'HEAD', headers: headers(), cache: 'no-store' });
    if (!resp.ok) throw new HttpError(resp.status, resp.status === 404 ? 'upload not found' : '');
    this.offset = Number(resp.headers.get('Upload-Offset') || 0);
    this.show(this.offset);
    this.finishFrom(resp.headers);
  }

  patch() {
    const end = Math.min(this.offset + CHUNK, this.file.size);
    const chunk = this.file.slice(this.offset, end);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      xhr.open('PATCH', this.url);
      const h = headers({ 'Upload-Offset': String(this.offset), 'Content-Type': 'application/offset+octet-stream' });
      for (const [k, v] of Object.entries(h)) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (ev) => {
        this.show(this.offset + ev.loaded);
        this.say(`${sizeText(this.offset + ev.loaded)} of ${sizeText(this.file.size)}`);
      };
      xhr.onload = () => {
        if (xhr.status === 204) {
          this.offset = Number(xhr.getResponseHeader('Upload-Offset'));
          this.show(this.offset);
          this.finishFrom({ get: (name) => xhr.getResponseHeader(name) });
          resolve();
        } else if (xhr.status === 409) {
          this.head().then(resolve, reject); // someone else moved it: follow
        } else {
          let detail = '';
          try { detail = JSON.parse(xhr.responseText).detail || ''; } catch { /* not JSON */ }
          reject(new HttpError(xhr.status, detail));
        }
      };
      xhr.onerror = () => reject(new Error('network error'));
      xhr.onabort = () => reject(new Error('aborted'));
      xhr.send(chunk);
    });
  }

  // The completing answer (or a later HEAD) names the stored object.
  finishFrom(h) {
    const hash = h.get('Upload-File-Hash');
    if (!hash) return;
    this.done = true;
    this.hash = hash;
    localStorage.removeItem(this.key);
    refreshPending();
    const where = h.get('Content-Location');
    const link = where ? new URL(where, endpoint) :
      new URL(hash + '?filename=' + encodeURIComponent(this.file.name), filesBase);
    this.show(this.file.size);
    this.say('Stored', 'done');
    this.pauseButton.hidden = true;
    this.li.setAttribute('data-hash', hash);
    const code = el('code', { class: 'hash' }, hash);
    const a = el('a', { href: link.href, class: 'download' }, 'Download');
    const copyHash = el('button', { type: 'button' }, 'Copy hash');
    copyHash.addEventListener('click', () => copy(hash, copyHash));
    const copyLink = el('button', { type: 'button' }, 'Copy link');
    copyLink.addEventListener('click', () => copy(link.href, copyLink));
    const actions = el('div', { class: 'actions' });
    actions.append(a, copyHash, copyLink);
    const line = el('div', {}, 'Hash: ');
    line.append(code);
    this.result.replaceChildren(line, actions);
    this.result.hidden = false;
  }

  failed(err) {
    if (err instanceof HttpError && (err.status === 401 || err.status === 403)) {
      this.waitingForToken = true;
      askForToken(err.status === 403 ? 'The token lacks the write scope.' : '');
      this.say('Needs an access token', 'error');
      return;
    }
    if (err instanceof HttpError && (err.status === 404 || err.status === 410)) {
      localStorage.removeItem(this.key);
      this.url = null;
    }
    const why = err instanceof HttpError ? `${err.status} ${err.message}` : err.message;
    this.say(`Stopped: ${why}. Press Resume to try again.`, 'error');
  }
}

async function copy(text, button) {
  const before = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => { button.textContent = before; }, 1500);
}

function askForToken(why) {
  $('token-box').hidden = false;
  if (why) $('token-why').textContent = why;
  $('token').focus();
}

function addFiles(list) {
  for (const file of list) {
    const entry = new Entry(file);
    entries.push(entry);
    entry.start();
  }
}

function refreshPending() {
  const ul = $('pending');
  ul.replaceChildren();
  const active = new Set(entries.map((e) => e.key));
  for (let i = 0; i < localStorage.length; i += 1) {
    const key = localStorage.key(i);
    if (!key.startsWith(KEY_PREFIX) || active.has(key)) continue;
    let saved;
    try { saved = JSON.parse(localStorage.getItem(key)); } catch { continue; }
    const li = el('li');
    li.append(el('span', { class: 'name' }, saved.name), ` (${sizeText(saved.size)}) `);
    const forget = el('button', { type: 'button' }, 'Forget');
    forget.addEventListener('click', () => {
      fetch(saved.url, { method: 'DELETE', headers: headers() }).catch(() => {});
      localStorage.removeItem(key);
      refreshPending();
    });
    li.append(forget);
    ul.append(li);
  }
  $('pending-box').hidden = ul.children.length === 0;
}

function setup() {
  const input = $('files');
  input.addEventListener('change', () => { addFiles(input.files); input.value = ''; });
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    addFiles(ev.dataTransfer.files);
  });
  $('token').value = token();
  if (token()) $('token-box').hidden = false;
  $('token-box').addEventListener('submit', (ev) => {
    ev.preventDefault(); // Enter in the field or the button: no navigation
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim());
    for (const e of entries) {
      if (e.waitingForToken) { e.waitingForToken = false; e.start(); }
    }
  });
  $('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
  });
  window.addEventListener('online', () => {
    for (const e of entries) if (!e.done && !e.paused && !e.running) e.start();
  });
  refreshPending();
}

setup();
