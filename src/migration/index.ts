export {
  CalibrationError,
  DEFAULT_CALIBRATION,
  type InstantCalibration,
  type MigrationCalibration,
  type PostcopyCalibration,
  type PrecopyCalibration,
  parseCalibration,
} from "./calibration.ts";
export {
  DEFAULT_MECHANISM_POLICY,
  type Endpoint,
  estimateMove,
  type MechanismPolicy,
  type Route,
  routeBetween,
} from "./mechanism.ts";
export {
  estimateCloudSim,
  estimateInstant,
  estimatePostcopy,
  estimatePrecopy,
  type MigrationEstimate,
  type MigrationMechanism,
  type MigrationModelKind,
  type MigrationSubject,
  mbpsToMiBps,
} from "./models.ts";
