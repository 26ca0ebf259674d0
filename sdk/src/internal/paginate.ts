/** Every item of a cursor-paginated list, fetching page after page as the caller iterates. */
export async function* paginate<T>(
  page: (cursor: string | null) => Promise<{ items: T[]; next: string | null }>,
): AsyncGenerator<T, void, undefined> {
  let cursor: string | null = null;
  do {
    const p = await page(cursor);
    yield* p.items;
    cursor = p.next;
  } while (cursor);
}
