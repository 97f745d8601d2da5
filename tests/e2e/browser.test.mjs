// browser.test.mjs -- the page served at / in a real browser (Debian's Chromium driven by playwright-core):
// avatars, a batch job and its progress, the stats panel against /stats, and screenshots at desktop and phone sizes.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { nip19 } from 'nostr-tools';
import { chromium } from 'playwright-core';

import { newUser, publishRaw, rawClient } from './lib/nostr.mjs';
import { startRelay } from './lib/relay.mjs';
import { startWorld } from './lib/world.mjs';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const MAX_IMAGE_SIZE = 200;
const WAIT = { timeout: 20000 };

let world, images, relay, guarded, browser, page;
// Console errors and warnings, and uncaught exceptions, in the order the page produced them.
const problems = [];
// The user whose avatar test 2 shows; test 3 puts it in the batch too.
let pictured;

before(async () => {
  // Never downloaded: scripts/deps.sh installs Debian's chromium, and without it this file must fail, not skip.
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/deps.sh test (apt-get install chromium)`);
  world = await startWorld({ max_image_size: MAX_IMAGE_SIZE });
  ({ images, relay } = world);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(WAIT.timeout);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
});

after(async () => {
  // Every step runs even if an earlier one failed (or before() stopped half way); the first error is reported.
  const steps = [
    () => browser?.close(),
    () => guarded?.cleanup(),
    () => world?.close(),
  ];
  let failure;
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
});

const upstreamProfile = (picture) => world.upstreamProfile(picture);

async function getJson(path) {
  const res = await fetch(`${relay.url}${path}`);
  assert.equal(res.status, 200, path);
  return res.json();
}

// Problems logged since index `from`, apart from the 404s that pubkeys without a picture cause by design.
const unexpectedProblems = (from) =>
  problems.slice(from).filter((p) => !/Failed to load resource: the server responded with a status of 404/.test(p));

test('the page loads at / with its sections and no console errors', { timeout: 30000 }, async () => {
  const res = await page.goto(`${relay.url}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'], /^text\/html/);
  assert.match(res.headers()['content-security-policy'], /default-src 'none'/);
  // Loaded once /stats has been read and rendered.
  await page.waitForSelector('#stat-pictures[data-value]');

  assert.match(await page.title(), /pfpcache-relay/);
  for (const landmark of ['header', 'nav', 'main', 'footer']) assert.equal(await page.locator(landmark).count(), 1, landmark);
  assert.deepEqual(await page.locator('main section h2').allTextContents(), [
    'Avatars',
    'Pre-cache',
    'Cache at a glance',
    'Use it on your site',
  ]);
  for (const id of ['pubkeys', 'show', 'avatars', 'token', 'batch', 'follows-pubkey', 'follows-limit', 'follows', 'jobs', 'admin-status', 'stats', 'relays']) {
    assert.equal(await page.locator(`#${id}`).count(), 1, `#${id}`);
  }
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, textarea')].filter((e) => e.labels.length === 0).map((e) => e.id),
  );
  assert.deepEqual(unlabelled, []);
  // No admin_token: the token field stays hidden and the page says why.
  assert.equal(await page.locator('#token').isVisible(), false);
  assert.match(await page.locator('#admin-auth').textContent(), /loopback/);
  assert.equal(await page.locator('#follows-limit').inputValue(), '500');
  // The snippets name this relay, not localhost:8080.
  assert.ok((await page.locator('#snip-img').textContent()).includes(`${relay.url}/profile-pic/npub1`));
  assert.deepEqual(problems, []);
});

test('Show displays an npub’s avatar, scaled to max_image_size, and says why another has none', { timeout: 30000 }, async () => {
  const from = problems.length;
  pictured = await upstreamProfile(`${images.url}/f/big.jpg`);
  const unknown = newUser();
  const npub = nip19.npubEncode(pictured.pubkey);
  const requested = [];
  page.on('request', (r) => requested.push(r.url()));

  await page.fill('#pubkeys', `${npub}\n${unknown.pubkey}, not-a-key`);
  await page.click('#show');

  const cards = page.locator('#avatars > li');
  assert.equal(await cards.count(), 3);
  await page.waitForSelector('#avatars > li:nth-child(1)[data-state="loaded"]');
  const img = cards.nth(0).locator('img');
  assert.equal(await img.getAttribute('src'), `/profile-pic/${npub}`);
  assert.match(await img.getAttribute('alt'), /^Profile picture of npub1/);
  const width = await img.evaluate((e) => e.naturalWidth);
  assert.ok(width > 0 && width <= MAX_IMAGE_SIZE, `naturalWidth ${width}`);

  await page.waitForSelector('#avatars > li:nth-child(2)[data-state="missing"]');
  assert.match(await cards.nth(1).textContent(), /no profile \(kind 0\) found for this pubkey/);
  assert.equal(await cards.nth(1).locator('img').isVisible(), false);

  // An obvious non-key is refused on the page, without a request.
  assert.equal(await cards.nth(2).getAttribute('data-state'), 'invalid');
  assert.match(await cards.nth(2).textContent(), /Not a public key/);
  assert.ok(!requested.some((u) => u.includes('not-a-key')), 'the non-key was never requested');
  await page.waitForFunction(() => /1 shown, 1 without a picture, 1 not public keys/.test(document.getElementById('avatars-status').textContent));
  assert.deepEqual(unexpectedProblems(from), []);
});

test('a batch started from the page shows its progress up to done, with the counts of GET /jobs/{id}', { timeout: 30000 }, async () => {
  const from = problems.length;
  const fresh = [];
  for (let i = 0; i < 3; i++) fresh.push(await upstreamProfile(`${images.url}/f/small.jpg?browser=${i}`));
  const unknown = newUser();
  const keys = [nip19.npubEncode(pictured.pubkey), ...fresh.map((u) => u.pubkey), unknown.pubkey];
  await page.fill('#pubkeys', keys.join('\n'));

  const [response] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/batch-cache'),
    page.click('#batch'),
  ]);
  assert.equal(response.status(), 202);
  const { job_id: id } = await response.json();
  await page.waitForSelector(`#jobs [data-job-id="${id}"][data-state="done"]`);
  assert.match(await page.locator('#admin-status').textContent(), new RegExp(`Job ${id} done: 3 cached, 1 already cached, 1 not found, 0 failed`));

  const item = page.locator(`#jobs [data-job-id="${id}"]`);
  const progress = await item.locator('progress').evaluate((p) => ({ value: p.value, max: p.max, label: p.getAttribute('aria-label') }));
  assert.equal(progress.value, progress.max);
  assert.match(progress.label, new RegExp(id));
  const shown = {};
  for (const field of ['done', 'total', 'cached', 'already_cached', 'not_found', 'failed']) {
    shown[field] = Number(await item.locator(`[data-count="${field}"]`).textContent());
  }
  const job = await getJson(`/jobs/${id}`);
  assert.deepEqual(shown, {
    done: job.done,
    total: job.total,
    cached: job.cached,
    already_cached: job.already_cached,
    not_found: job.not_found,
    failed: job.failed,
  });
  assert.deepEqual([job.total, job.cached, job.already_cached, job.not_found], [5, 3, 1, 1]);
  assert.equal(progress.max, job.total);

  // Show the batch's avatars too, for the screenshots: four pictures and one without.
  await page.click('#show');
  await page.waitForFunction(() => /4 shown, 1 without a picture/.test(document.getElementById('avatars-status').textContent));
  assert.deepEqual(unexpectedProblems(from), []);
});

test('the stats panel shows what GET /stats says', { timeout: 30000 }, async () => {
  // Wait for a refresh that starts after everything above has settled, then read /stats ourselves.
  const before = Number(await page.locator('#stats-updated').getAttribute('data-updated'));
  await page.waitForFunction((t) => Number(document.getElementById('stats-updated').dataset.updated) > t, before, { timeout: 12000 });
  const stats = await getJson('/stats');

  const value = (id) => page.locator(`#${id}`).getAttribute('data-value');
  assert.ok(stats.cache.pictures >= 4, `pictures ${stats.cache.pictures}`);
  assert.equal(await value('stat-pictures'), String(stats.cache.pictures));
  assert.equal(await value('stat-files'), String(stats.cache.files));
  assert.equal(await value('stat-bytes'), String(stats.cache.bytes));
  assert.equal(await value('stat-evictions'), String(stats.cache.evictions));
  assert.equal(await value('stat-jobs'), String(stats.jobs.queued + stats.jobs.running));
  assert.match(await page.locator('#stat-bytes').textContent(), / of 1\.0 GB$/);
  const meter = await page.locator('#stat-bytes-meter').evaluate((m) => [m.value, m.max]);
  assert.deepEqual(meter, [stats.cache.bytes, stats.cache.max_bytes]);
  assert.match(await page.locator('#stat-hit-ratio').textContent(), /^(\d{1,3}\.\d %|—)$/);

  const rows = await page.locator('#relays tbody tr').evaluateAll((trs) =>
    trs.map((tr) => ({ url: tr.dataset.url, state: tr.dataset.state, label: tr.cells[1].textContent })),
  );
  assert.deepEqual(rows, stats.upstream_relays.map((r) => ({ url: r.url, state: r.state, label: r.state })));
  assert.equal(rows[0].state, 'connected');
});

test('screenshots at desktop and phone sizes; no horizontal scroll on a phone', { timeout: 30000 }, async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: join(ARTIFACTS, 'page.png'), fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), 'horizontal scroll at 390 px');
  await page.screenshot({ path: join(ARTIFACTS, 'page-phone.png'), fullPage: true });

  await page.setViewportSize({ width: 360, height: 740 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'horizontal scroll at 360 px');
});

test('with admin_token and admin_pubkeys, the page sends the token, or signs NIP-98 with a NIP-07 signer', { timeout: 30000 }, async () => {
  const admin = newUser();
  const token = 'browser-test-token-0123456789';
  guarded = await startRelay({ config: { admin_token: token, admin_pubkeys: [admin.pubkey] } });
  const signer = await browser.newPage();
  signer.setDefaultTimeout(WAIT.timeout);
  const seen = [];
  signer.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') seen.push(m.text());
  });
  signer.on('pageerror', (e) => seen.push(e.message));
  // A NIP-07 extension as the page sees it: window.nostr, here signing in Node with the admin's key.
  await signer.exposeFunction('signWithAdminKey', (event) => admin.sign(event));
  await signer.addInitScript((pubkey) => {
    window.nostr = { getPublicKey: async () => pubkey, signEvent: (event) => window.signWithAdminKey(event) };
  }, admin.pubkey);
  const started = async (button, path) => {
    const [res] = await Promise.all([signer.waitForResponse((r) => new URL(r.url()).pathname.startsWith(path)), signer.click(button)]);
    return res;
  };

  try {
    await signer.goto(`${guarded.url}/`);
    await signer.waitForSelector('#token', { state: 'visible' });
    assert.match(await signer.locator('#admin-auth').textContent(), /admin token.*NIP-98/s);
    await signer.fill('#pubkeys', `${newUser().pubkey} ${newUser().pubkey}`);

    await signer.fill('#token', 'not-the-token-0123456789');
    const refused = await started('#batch', '/batch-cache');
    assert.equal(refused.status(), 401);
    assert.equal(refused.request().headers().authorization, 'Bearer not-the-token-0123456789');
    await signer.waitForFunction(() => /wrong token in the Authorization header.*HTTP 401/.test(document.getElementById('admin-status').textContent));

    await signer.fill('#token', token);
    assert.equal((await started('#batch', '/batch-cache')).status(), 202);

    // No token typed: the request carries a kind 27235 event bound to the URL, the method and the body.
    await signer.fill('#token', '');
    const signed = await started('#batch', '/batch-cache');
    assert.equal(signed.status(), 202);
    const auth = signed.request().headers().authorization;
    const event = JSON.parse(Buffer.from(auth.replace(/^Nostr /, ''), 'base64').toString());
    assert.equal(event.kind, 27235);
    assert.equal(event.pubkey, admin.pubkey);
    assert.deepEqual(event.tags.slice(0, 2), [['u', `${guarded.url}/batch-cache`], ['method', 'POST']]);
    const { job_id: id } = await signed.json();
    await signer.waitForSelector(`#jobs [data-job-id="${id}"][data-state="done"]`);

    // A GET is signed too, with its query in the u tag and no payload.
    const owner = newUser();
    const client = await rawClient(guarded.url);
    const follows = [newUser().pubkey, newUser().pubkey, newUser().pubkey];
    assert.equal((await publishRaw(client, owner.sign({ kind: 3, tags: follows.map((p) => ['p', p]) })))[2], true);
    client.close();
    await signer.fill('#follows-pubkey', nip19.npubEncode(owner.pubkey));
    await signer.fill('#follows-limit', '2');
    const followed = await started('#follows', '/cache-follows/');
    assert.equal(followed.status(), 202);
    const getEvent = JSON.parse(Buffer.from(followed.request().headers().authorization.slice(6), 'base64').toString());
    assert.deepEqual(getEvent.tags, [['u', followed.url()], ['method', 'GET']]);
    const job = await followed.json();
    assert.equal(job.count, 2);
    await signer.waitForSelector(`#jobs [data-job-id="${job.job_id}"][data-state="done"]`);
    assert.match(await signer.locator(`#jobs [data-job-id="${job.job_id}"] .title`).textContent(), new RegExp(`^Follows of ${owner.pubkey.slice(0, 10)}…`));

    // The refused request is logged by the browser itself; nothing else is.
    assert.deepEqual(seen.filter((t) => !/status of 401/.test(t)), []);
  } finally {
    await signer.close();
  }
});
