// Runs graphql-http's serverAudits (GraphQL-over-HTTP spec conformance) against a live server and
// prints one JSON array on stdout: [{id, name, status, reason?, responseStatus?}, ...].
// Usage: node run.mjs http://127.0.0.1:PORT/graphql   (NODE_PATH-free: run from a directory whose
// node_modules holds the packages of package-lock.json; tests/test_audit_graphql_http.py does that).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node run.mjs URL');
  process.exit(2);
}

const results = [];
for (const audit of serverAudits({ url })) {
  let result;
  try {
    result = await audit.fn();
  } catch (err) {
    // a fatal audit error (e.g. the server is unreachable) is reported as an error of that audit
    result = { id: audit.id, name: audit.name, status: 'error', reason: `audit threw: ${err}` };
  }
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    if (result.response) {
      entry.responseStatus = result.response.status;
      try {
        entry.responseBody = (await result.response.text()).slice(0, 500);
      } catch {
        // body already consumed by the audit
      }
    }
  }
  results.push(entry);
}
process.stdout.write(JSON.stringify(results) + '\n');
