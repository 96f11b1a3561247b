// Validates custom resources against their CRD schemas, as compiled by the @kubernetes-models packages.
// stdin: a JSON array of resources; stdout: a JSON array of {kind, name, schema, errors} (errors: [] when valid).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const MODELS = {
  "kafka.strimzi.io/v1 KafkaTopic": ["@kubernetes-models/strimzi-kafka-operator", "kafka.strimzi.io/v1/KafkaTopic"],
  "keda.sh/v1alpha1 ScaledObject": ["@kubernetes-models/keda", "keda.sh/v1alpha1/ScaledObject"],
  "monitoring.coreos.com/v1 PodMonitor": ["@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1/PodMonitor"],
  "monitoring.coreos.com/v1 PrometheusRule": ["@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1/PrometheusRule"],
};

function version(pkg) {
  return JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")).version;
}

const docs = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const doc of docs) {
  const key = `${doc.apiVersion} ${doc.kind}`;
  const name = doc.metadata?.name ?? "";
  const model = MODELS[key];
  if (!model) {
    out.push({ kind: key, name, schema: null, errors: [`no CRD schema for ${key}`] });
    continue;
  }
  const [pkg, path] = model;
  const mod = await import(`${pkg}/${path}`);
  const cls = mod[doc.kind];
  let errors = [];
  try {
    new cls(doc).validate();
  } catch (err) {
    errors = (err.errors ?? [err]).map((e) => `${e.instancePath ?? ""} ${e.message ?? String(e)} ${JSON.stringify(e.params ?? {})}`);
  }
  out.push({ kind: key, name, schema: `${pkg}@${version(pkg)}`, errors });
}
process.stdout.write(JSON.stringify(out));
