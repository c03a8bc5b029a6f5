// Connection ids ('C-17', 'S-3'), which the log, SHOW CLIENTS/SERVERS and KILL_CLIENT use. With
// workers, worker i of N numbers its connections i, N + i, 2N + i, ...: ids stay unique over the
// whole pooler, so the console can list every worker's rows together, and id % N names the owner.
// A replacement worker starts its sequence again (the dead worker's connections are gone).
// Must not: be set after the first connection was made (ids would repeat).

let stride = 1
let offset = 0
let clients = 0
let servers = 0

/** Worker `index` of `count`: called once, before any connection exists. */
export function numberConnectionsAsWorker(index: number, count: number): void {
  stride = count
  offset = index
}

export function nextClientId(): string {
  return `C-${++clients * stride + offset}`
}

export function nextServerId(): string {
  return `S-${++servers * stride + offset}`
}
