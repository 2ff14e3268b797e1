// Upload one file with tus-js-client (npm) and report what happened as JSON
// lines on stdout, for tests/test_tus_js.py.
//
//   node tus-upload.mjs '{"endpoint": "...", "file": "...", ...}'
//
// Options: chunkSize, parallelUploads, token, urlStorage (a JSON file: a second
// process with the same file and storage resumes the upload), stopAtBytes
// (abort once that many bytes are acknowledged, as a cut connection would),
// protocol (tus-js-client's protocol option), metadata (extra Upload-Metadata).
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

const opts = JSON.parse(process.argv[2]);
const say = (event, data = {}) => process.stdout.write(JSON.stringify({ event, ...data }) + '\n');
const deadline = setTimeout(() => { say('error', { message: 'timed out' }); process.exit(3); }, (opts.timeout || 120) * 1000);

const storage = opts.urlStorage ? new tus.FileUrlStorage(opts.urlStorage) : undefined;
const headers = opts.token ? { Authorization: `Bearer ${opts.token}` } : {};
const upload = new tus.Upload(fs.createReadStream(opts.file), {
  endpoint: opts.endpoint,
  chunkSize: opts.chunkSize || Infinity,
  parallelUploads: opts.parallelUploads || 1,
  ...(opts.protocol ? { protocol: opts.protocol } : {}),
  ...(storage ? { urlStorage: storage } : {}),
  headers,
  storeFingerprintForResuming: Boolean(storage),
  removeFingerprintOnSuccess: Boolean(storage),
  retryDelays: [],
  metadata: { filename: path.basename(opts.file), ...(opts.metadata || {}) },
  onUploadUrlAvailable() { say('url', { url: upload.url }); },
  onChunkComplete(_size, accepted, total) {
    say('chunk', { accepted, total });
    if (opts.stopAtBytes && accepted >= opts.stopAtBytes) {
      upload.abort(false).then(() => { say('aborted', { accepted, url: upload.url }); finish(0); });
    }
  },
  onSuccess(payload) {
    const res = payload && payload.lastResponse;
    say('success', {
      url: upload.url,
      hash: res ? res.getHeader('Upload-File-Hash') : null,
      contentLocation: res ? res.getHeader('Content-Location') : null,
    });
    finish(0);
  },
  onError(err) {
    const res = err.originalResponse;
    say('error', {
      message: String(err.message || err),
      status: res ? res.getStatus() : null,
      body: res ? res.getBody() : null,
    });
    finish(1);
  },
});

function finish(code) {
  clearTimeout(deadline);
  process.exitCode = code;
}

const previous = storage ? await upload.findPreviousUploads() : [];
if (previous.length) {
  say('resuming', { count: previous.length });
  upload.resumeFromPreviousUpload(previous[0]);
}
upload.start();
