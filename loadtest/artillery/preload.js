'use strict';
// Loaded with `node --require` (CommonJS: this folder has no "type": "module") into the Artillery process and (through the inherited execArgv)
// into each of its worker threads, before Artillery itself. Three jobs:
//
// 1. Telemetry off for real. Artillery 2.0.21 still sends a stripped event when
//    ARTILLERY_DISABLE_TELEMETRY is set (and, offline, waits ~12 s for it at exit): its telemetry
//    module is replaced by one that does nothing.
// 2. Egress guard. With VOICE_LT_EGRESS=fail every attempt to reach a non-loopback address (TCP,
//    UDP, DNS) is refused and written to VOICE_LT_EGRESS_LOG; with VOICE_LT_EGRESS=record it is
//    only written. A load test only ever talks to servers on this machine (or the --target given).
// 3. VOICE_LT_WORKERS: Artillery 2.0.21 runs (CPUs - 1) worker threads locally and ignores WORKERS;
//    this sets the count by making the main thread's os.cpus() report workers + 1 entries.
const Module = require('node:module');
const fs = require('node:fs');
const net = require('node:net');
const dgram = require('node:dgram');
const dns = require('node:dns');
const os = require('node:os');
const { isMainThread, threadId } = require('node:worker_threads');

// ---- 1. telemetry ----------------------------------------------------------------------------
const telemetryStub = {
  init: () => ({ capture: () => {}, shutdown: async () => {} }),
  notice: () => {},
  isEnabled: () => false,
};
try {
  const file = require.resolve('artillery/lib/telemetry.js', { paths: [__dirname] });
  const m = new Module(file, module);
  m.filename = file;
  m.loaded = true;
  m.exports = telemetryStub;
  require.cache[file] = m;
} catch {
  // Artillery not installed here: nothing to stub (the runner installs it before using this file).
}

// ---- 2. egress guard -------------------------------------------------------------------------
const mode = process.env.VOICE_LT_EGRESS; // undefined | 'record' | 'fail'
const logFile = process.env.VOICE_LT_EGRESS_LOG;
const extraAllowed = new Set(
  (process.env.VOICE_LT_EGRESS_ALLOW || '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean),
);

// Hosts treated as off-machine although they are not: the guard's own test aims at one of them
// (127.0.0.2) to prove a refusal without sending a packet anywhere else.
const denied = new Set(
  (process.env.VOICE_LT_EGRESS_DENY || '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean),
);

function isLoopback(host) {
  if (host === undefined || host === null || host === '') return true; // Node defaults to localhost
  const h = String(host)
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  if (denied.has(h)) return false;
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || /^::ffff:127\./.test(h);
  return extraAllowed.has(h);
}

/** Logs an attempt; returns the error to fail it with (mode fail), or null (mode record). */
function refuse(kind, host, port) {
  const line = `${kind} ${host}${port !== undefined ? `:${port}` : ''} pid=${process.pid} thread=${threadId}\n`;
  if (logFile) {
    try {
      fs.appendFileSync(logFile, line);
    } catch {
      /* the log is best effort; the refusal below is not */
    }
  }
  if (mode !== 'fail') return null;
  const err = new Error(`egress guard: ${kind} to ${host} refused (load tests stay on this machine)`);
  err.code = 'EGRESS_REFUSED';
  return err;
}

if (mode === 'record' || mode === 'fail') {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function guardedConnect(...args) {
    let opts = args[0];
    if (Array.isArray(opts)) opts = opts[0]; // internal normalized form
    let host;
    let port;
    let isPath = false;
    if (opts !== null && typeof opts === 'object') {
      isPath = typeof opts.path === 'string';
      host = opts.host;
      port = opts.port;
    } else if (typeof opts === 'string' && !/^\d+$/.test(opts)) {
      isPath = true; // a unix socket path
    } else {
      port = opts;
      host = typeof args[1] === 'string' ? args[1] : undefined;
    }
    const err = !isPath && !isLoopback(host) ? refuse('tcp', host, port) : null;
    if (err) {
      process.nextTick(() => this.destroy(err));
      return this;
    }
    return connect.apply(this, args);
  };
  const send = dgram.Socket.prototype.send;
  dgram.Socket.prototype.send = function guardedSend(...args) {
    // send(msg, [offset, length,] port, address, cb): the address is the first string after msg.
    const address = args.slice(1).find((a) => typeof a === 'string');
    const err = address !== undefined && !isLoopback(address) ? refuse('udp', address) : null;
    if (err) {
      const cb = args.find((a) => typeof a === 'function');
      if (cb) process.nextTick(cb, err);
      else process.nextTick(() => this.emit('error', err));
      return undefined;
    }
    return send.apply(this, args);
  };
  const udpConnect = dgram.Socket.prototype.connect;
  dgram.Socket.prototype.connect = function guardedUdpConnect(port, address, cb) {
    const err = typeof address === 'string' && !isLoopback(address) ? refuse('udp', address, port) : null;
    if (err) {
      process.nextTick(() => this.emit('error', err));
      return undefined;
    }
    return udpConnect.call(this, port, address, cb);
  };
  const guardName = (fnName, target, promises) => {
    const orig = target[fnName];
    if (typeof orig !== 'function') return;
    target[fnName] = function guardedDns(host, ...rest) {
      const err = !isLoopback(host) ? refuse(`dns.${fnName}`, host) : null;
      if (!err) return orig.call(this, host, ...rest);
      if (promises) return Promise.reject(err);
      const cb = rest.find((a) => typeof a === 'function');
      if (cb) process.nextTick(cb, err);
      return undefined;
    };
  };
  const names = ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveAny', 'resolveCname', 'resolveTxt'];
  for (const fn of names) {
    guardName(fn, dns, false);
    guardName(fn, dns.promises, true);
    if (dns.Resolver) guardName(fn, dns.Resolver.prototype, false);
    if (dns.promises.Resolver) guardName(fn, dns.promises.Resolver.prototype, true);
  }
}

// ---- 3. worker count -------------------------------------------------------------------------
const workers = Number(process.env.VOICE_LT_WORKERS);
if (isMainThread && Number.isInteger(workers) && workers >= 1) {
  const cpus = os.cpus;
  os.cpus = function cpusForArtillery() {
    const real = cpus.call(os);
    const want = workers + 1;
    return Array.from({ length: want }, (_, i) => real[i % Math.max(1, real.length)]);
  };
}

module.exports = { isLoopback };
