// The package's public entry: everything a game or tool imports comes from here.

export * from './client/index.js';
export { ERROR_CODES, type ErrorCode, HolePunchError, isErrorCode } from './errors.js';
export type { Endpoint } from './protocol/endpoint.js';
export * from './protocol/index.js';
export * from './server/index.js';
export * from './sim/index.js';
