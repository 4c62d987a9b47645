// Preloaded into dynalite by the tests (node --require). dynalite throws
// from a request's 'error' handler, so a client that gives up in the
// middle of sending a request (a timeout: proxyctl bounds its store calls
// to 1 s) kills the whole emulator with "Error: aborted" (ECONNRESET).
// DynamoDB survives its clients' timeouts; so must the emulator the tests
// run against. Any other uncaught error still ends the process.
'use strict'
process.on('uncaughtException', (err) => {
  if (err && err.code === 'ECONNRESET' && err.message === 'aborted') return
  console.error(err)
  process.exit(1)
})
