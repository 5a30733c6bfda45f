/**
 * Runs the attack phase with the plan given as JSON in argv[2] and prints its figures as one
 * JSON line: how `attack-netns.ts` runs it inside a network namespace.
 */
import { type AttackPlan, runAttackPhase } from './attack-phase.js';

const plan = JSON.parse(process.argv[2] ?? '{}') as AttackPlan;
console.log(JSON.stringify(await runAttackPhase(plan)));
