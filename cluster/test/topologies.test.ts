import { runScenarios } from './scenarios/run.js';
import { clusterTopology, singleTopology } from './scenarios/topology.js';
import { voiceScenarios } from './scenarios/voice-scenarios.js';

// Every voice scenario (scenarios/voice-scenarios.ts) on one server in this process and, side by
// side, on two server processes over one redis-server started by the launcher of `npm run cluster`,
// where clients alternate between the processes: members signal on a process other than their
// channel's owner.
runScenarios('voice scenarios on one server and on a 2-process cluster', voiceScenarios, [
  singleTopology,
  () => clusterTopology(2),
]);
