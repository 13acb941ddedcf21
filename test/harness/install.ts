/**
 * Pre-installs Synapse into the harness virtualenv (used by `.ci/run` before `npm test`) and
 * prints the installed version. Usage: `node dist/test/harness/install.js`.
 *
 * @module
 */
import { ensureSynapseInstalled, getSynapseVersion } from "./synapse.js";

const started = Date.now();
const python = await ensureSynapseInstalled();
const version = await getSynapseVersion(python);
console.log(`Synapse ${version} ready (${python}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
