// Parse LogQL expressions with Grafana's Lezer grammar (@grafana/lezer-logql) and report problems.
// Input (stdin): a JSON array of expressions. Output (stdout): a JSON array, one entry per expression:
// {"errors": ["<node> at <offset>: <text>"], "groupings": [["cluster", ...], ...]}.
// Lezer recovers from syntax errors by inserting error nodes (type.isError) instead of throwing.
import { parser } from "@grafana/lezer-logql";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const exprs = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const results = exprs.map((expr) => {
  const tree = parser.parse(expr);
  const errors = [];
  const groupings = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push(`syntax error at ${node.from}: ${JSON.stringify(expr.slice(node.from, node.to + 10))}`);
      }
      if (node.name === "Grouping") {
        const labels = [];
        node.node.cursor().iterate((n) => {
          if (n.name === "Identifier") labels.push(expr.slice(n.from, n.to));
        });
        groupings.push({ kind: expr.slice(node.from, node.to).split("(")[0].trim(), labels });
      }
    },
  });
  return { errors, groupings };
});
process.stdout.write(JSON.stringify(results));
