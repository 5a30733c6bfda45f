/**
 * Where the built programs are, for whoever runs them as processes (the NAT lab, the
 * benchmarks, the tests): one place instead of `dist/src/...` strings that drift when a file
 * moves. Resolved from this module, so they hold in dist/ wherever the package is installed.
 */
import { fileURLToPath } from 'node:url';

const entry = (relative: string): string => fileURLToPath(new URL(relative, import.meta.url));

export const SERVER_CLI_PATH = entry('./server.js');
export const CLIENT_CLI_PATH = entry('./client.js');
export const LEGACY_CLIENT_CLI_PATH = entry('../client-legacy/cli.js');
export const PROBE_AGENT_PATH = entry('../natlab/probe-agent.js');
export const ECHO_SERVER_PATH = entry('../bench/echo-server.js');
export const BENCH_RUN_PATH = entry('../bench/run.js');
export const NATLAB_CLI_PATH = entry('../natlab/cli.js');
