// Types of bin/freshness.js (plain JavaScript, so that the launchers load no TypeScript).
export declare const STAMP: string;
export declare const EXTRA_INPUTS: readonly string[];
export interface SourceState {
  files: number;
  newestCtimeMs: number;
}
export declare function sourceState(root: string): SourceState;
export declare function staleReason(root: string): string | null;
export declare function runsDist(root: string): boolean;
