'use strict';
// Artillery loads engines with require('artillery-engine-<name>'); the runner puts this folder's
// parent on NODE_PATH. The engine itself is TypeScript in loadtest/src/engine, used from its build
// (loadtest/dist, made by `npm run build`): ESM, so it is imported once per worker and every
// scenario waits for it.
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const entry = path.resolve(__dirname, '../../../dist/engine/index.js');

function VoiceEngineShim(script) {
  this.engine = import(pathToFileURL(entry).href).then((m) => new m.VoiceEngine(script));
  // An unhandled rejection here would kill the worker before the first user reports it.
  this.engine.catch(() => {});
}

VoiceEngineShim.prototype.createScenario = function createScenario(spec, ee) {
  const scenario = this.engine.then((e) => e.createScenario(spec, ee));
  scenario.catch(() => {});
  return function run(context, done) {
    scenario.then(
      (fn) => fn(context, done),
      (err) => {
        ee.emit('started');
        ee.emit('error', err && err.name === 'TypeError' ? 'ENGINE_CONFIG' : 'ENGINE_LOAD');
        done(err, context);
      },
    );
  };
};

module.exports = VoiceEngineShim;
