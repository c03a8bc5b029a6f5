// A doubly linked list whose links live in the items themselves, so add and remove are O(1) and
// allocate nothing. An item is on at most one list at a time (it has one prev/next pair); the
// pool relies on this: a connection's state names the single list it is on.
// Must not: be used for items that need to be on two lists at once.

export interface Linked<T> {
  prev: T | null
  next: T | null
  /** The list the item is on; only IntrusiveList writes it. */
  list: object | null
}

export class IntrusiveList<T extends Linked<T>> {
  first: T | null = null
  last: T | null = null
  size = 0

  push(item: T): void {
    if (item.list !== null) throw new Error('intrusive-list: item is already on a list')
    item.list = this
    item.prev = this.last
    item.next = null
    if (this.last !== null) this.last.next = item
    else this.first = item
    this.last = item
    this.size++
  }

  unshift(item: T): void {
    if (item.list !== null) throw new Error('intrusive-list: item is already on a list')
    item.list = this
    item.next = this.first
    item.prev = null
    if (this.first !== null) this.first.prev = item
    else this.last = item
    this.first = item
    this.size++
  }

  remove(item: T): void {
    if (item.list !== this) throw new Error('intrusive-list: item is not on this list')
    if (item.prev !== null) item.prev.next = item.next
    else this.first = item.next
    if (item.next !== null) item.next.prev = item.prev
    else this.last = item.prev
    item.prev = null
    item.next = null
    item.list = null
    this.size--
  }

  *[Symbol.iterator](): IterableIterator<T> {
    // Read next before yielding so the consumer may remove the current item.
    for (let it = this.first; it !== null; ) {
      const next: T | null = it.next
      yield it
      it = next
    }
  }
}
