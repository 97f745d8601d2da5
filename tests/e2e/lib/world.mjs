// world.mjs -- a relay under test whose profiles come from a local upstream relay (another instance of
// the binary) and whose pictures come from a local image server, for the tests of what builds on both.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';

import { makeFixtures, startImageServer } from './images.mjs';
import { newUser, publishRaw, rawClient, wsUrl } from './nostr.mjs';
import { startRelay, tempDir } from './relay.mjs';

// Options of the relay under test; `config` adds to them.
export function worldConfig(upstream, config = {}) {
  return {
    upstream_relays: [wsUrl(upstream.url)],
    upstream_timeout_ms: 2000,
    allowed_source_addresses: ['127.0.0.1'],
    precache_on_metadata: false,
    ...config,
  };
}

// Starts the image server, the upstream relay and the relay under test, connected to each other.
export async function startWorld(config = {}) {
  const w = { fixtures: makeFixtures(await tempDir()) };
  try {
    w.images = await startImageServer(w.fixtures);
    w.upstream = await startRelay();
    w.upClient = await rawClient(w.upstream.url);
    w.relay = await startRelay({ config: worldConfig(w.upstream, config) });
    await w.relay.waitUpstreamConnected();
  } catch (e) {
    await closeWorld(w).catch(() => {});
    throw e;
  }
  // A user whose kind 0 is on the upstream relay only (with no `picture` when it is undefined).
  w.upstreamProfile = async (picture) => {
    const user = newUser();
    const content = JSON.stringify(picture === undefined ? { name: 'nobody' } : { name: 'someone', picture });
    assert.equal((await publishRaw(w.upClient, user.sign({ kind: 0, content })))[2], true);
    return user;
  };
  w.close = () => closeWorld(w);
  return w;
}

// Stops whatever was started, every step even if one fails, and rethrows the first failure.
async function closeWorld(w) {
  let failure;
  for (const step of [
    () => w.upClient?.close(),
    () => w.relay?.cleanup(),
    () => w.upstream?.cleanup(),
    () => w.images?.close(),
    () => rm(w.fixtures, { recursive: true, force: true }),
  ]) {
    try {
      await step();
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
}
