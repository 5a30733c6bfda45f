import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SWEEP_PORT_RANGE } from '../src/client/index.js';
import { classify, type Observation } from '../src/doctor/index.js';
import { isSequentialStep, natClassOf, SEQUENTIAL_PORT_DELTA } from '../src/nat/index.js';

const SERVER = { address: '203.0.113.10', port: 4000 };

/** What the doctor saw when its six sockets got these public ports, in send order. */
function observed(publicPorts: readonly number[]): Observation {
  return {
    server: SERVER,
    localPorts: publicPorts.map((_, i) => 50_000 + i),
    base: publicPorts.map((port) => ({ address: '198.51.100.7', port })),
    altAddress: '',
    altPort: 0,
    viaAltAddress: undefined,
    viaAltPort: undefined,
    viaAltBoth: undefined,
    heardFromAltPort: undefined,
    heardFromAltBoth: undefined,
    hairpin: undefined,
  };
}

describe('one definition of sequential ports (src/nat)', () => {
  it("the doctor calls the lab's wrapping 64-port pool sequential, as the client does", () => {
    // The lab's symmetric-sequential router: port 40000 + k mod 64 for the k-th new flow.
    const wrapped = [40_062, 40_063, 40_000, 40_001, 40_002, 40_003];
    assert.equal(natClassOf(40_063, 40_000), 'edm-sequential');
    assert.equal(classify(observed(wrapped)).ports, 'sequential');
  });

  it('the doctor calls a busy sequential NAT sequential when other flows come between (up to the sweep range)', () => {
    const busy = [40_000, 40_020, 40_041, 40_060, 40_100, 40_164];
    assert.equal(natClassOf(40_100, 40_164), 'edm-sequential');
    assert.equal(classify(observed(busy)).ports, 'sequential');
    const beyond = [40_000, 40_001, 40_002, 40_003, 40_004, 40_004 + SEQUENTIAL_PORT_DELTA + 1];
    assert.equal(natClassOf(40_004, 40_004 + SEQUENTIAL_PORT_DELTA + 1), 'edm-random');
    assert.equal(classify(observed(beyond)).ports, 'random');
  });

  it("the client's sweep covers every port classification calls sequential", () => {
    assert.equal(SWEEP_PORT_RANGE, SEQUENTIAL_PORT_DELTA);
    assert.equal(isSequentialStep(5000, 5000), false, 'the same port is not a step');
    assert.equal(isSequentialStep(5000, 5000 - SEQUENTIAL_PORT_DELTA), true);
  });
});
