/** Declarations of gen-types.mjs, for the test that keeps the generated types fresh. */
export declare const SCHEMAS_DIR: string;
export declare const TYPES_FILE: string;
export declare const SDK_SCHEMAS: string[];
export declare function generateTypes(): Promise<string>;
