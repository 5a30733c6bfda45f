// Public face of the wire protocols.

export * from './address.js';
export * from './endpoint.js';
export * from './hairpin.js';
export * from './legacy.js';
export * from './legacy-client.js';
export * from './magic.js';
export * from './v2.js';
