export interface FoundationTables {
  gateway_meta: { key: string; value: string };
}
