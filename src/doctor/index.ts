// NAT diagnosis (`holepunch-client doctor`): what the NAT in front of this machine does, in
// RFC 4787 terms, and what that means for direct connections. The core is sans-IO
// (diagnosis.ts), the verdict pure (report.ts), run.ts owns the sockets.
export {
  DIAGNOSIS_SOCKETS,
  type DiagnosisOptions,
  type DiagnosisTransmit,
  NatDiagnosis,
} from './diagnosis.js';
export {
  classify,
  NAT_BEHAVIOURS,
  type NatBehaviour,
  type NatReport,
  type Observation,
  type PortAllocation,
} from './report.js';
export { type DiagnoseNatOptions, diagnoseNat, type NatDiagnosisResult } from './run.js';
