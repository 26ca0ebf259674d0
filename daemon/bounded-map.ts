/**
 * Sets `key` in `map`, first dropping the oldest entry (insertion order) when
 * the key is new and the map already holds `max`: the bound of every in-memory
 * cache of the daemon (prepared statements, verified tokens, known API keys,
 * kept rows).
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (!map.has(key) && map.size >= max) map.delete(map.keys().next().value as K);
  map.set(key, value);
}
