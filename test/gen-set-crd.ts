/**
 * gen-set-crd writes crds/fluxbootstrap.dev_clusterbootstrapsets.yaml: the ClusterBootstrapSet CRD, whose
 * spec.template.spec is the ClusterBootstrap CRD's spec schema, so the two never drift. Run it after a change
 * of the ClusterBootstrap CRD (`node test/gen-set-crd.ts`); a unit test checks the committed file is current.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import yaml from 'js-yaml';

/** LABEL_KEY and LABEL_VALUE bound a selector's keys and values as Kubernetes does, so none can add selector syntax. */
const LABEL_KEY = {
  type: 'string',
  maxLength: 316,
  pattern: '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
};
const LABEL_VALUE = { type: 'string', maxLength: 63, pattern: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$' };

const root = new URL('../crds/', import.meta.url);

/** setCRD builds the ClusterBootstrapSet CRD from the ClusterBootstrap CRD. */
export function setCRD(): string {
  const cb = yaml.load(readFileSync(new URL('fluxbootstrap.dev_clusterbootstraps.yaml', root), 'utf8')) as any;
  const cbVersion = cb.spec.versions[0];
  const templateSpec = structuredClone(cbVersion.schema.openAPIV3Schema.properties.spec);
  const selector = {
    type: 'object',
    description: 'A label selector (matchLabels, matchExpressions).',
    properties: {
      matchLabels: {
        type: 'object',
        description: 'Labels every selected object has, key to value.',
        maxProperties: 32,
        additionalProperties: LABEL_VALUE,
      },
      matchExpressions: {
        type: 'array',
        description: 'Requirements on the labels, all of which must hold.',
        maxItems: 16,
        items: {
          type: 'object',
          required: ['key', 'operator'],
          properties: {
            key: { ...LABEL_KEY, description: 'The label key.' },
            operator: {
              type: 'string',
              description: 'In, NotIn, Exists or DoesNotExist.',
              enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'],
            },
            values: {
              type: 'array',
              description: 'The values for In and NotIn.',
              maxItems: 64,
              items: LABEL_VALUE,
            },
          },
        },
      },
    },
    'x-kubernetes-map-type': 'atomic',
  };
  const crd = {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: 'clusterbootstrapsets.fluxbootstrap.dev',
      labels: { 'app.kubernetes.io/part-of': 'flux-bootstrap-operator' },
    },
    spec: {
      group: 'fluxbootstrap.dev',
      scope: 'Namespaced',
      names: {
        kind: 'ClusterBootstrapSet',
        listKind: 'ClusterBootstrapSetList',
        plural: 'clusterbootstrapsets',
        singular: 'clusterbootstrapset',
        shortNames: ['cbset'],
        categories: ['flux', 'fluxcd'],
      },
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Selected', type: 'integer', jsonPath: '.status.selected' },
            { name: 'Ready', type: 'integer', jsonPath: '.status.ready' },
            { name: 'Status', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].message' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'ClusterBootstrapSet bootstraps Flux onto every cluster its selector matches, with one ' +
                'ClusterBootstrap per cluster.',
              required: ['spec'],
              properties: {
                apiVersion: cbVersion.schema.openAPIV3Schema.properties.apiVersion,
                kind: cbVersion.schema.openAPIV3Schema.properties.kind,
                metadata: { type: 'object' },
                spec: {
                  type: 'object',
                  description: 'Which clusters to bootstrap, and the ClusterBootstrap each gets.',
                  required: ['template'],
                  'x-kubernetes-validations': [
                    {
                      rule: 'has(self.clusterSelector) != has(self.kubeconfigSecretSelector)',
                      message: 'set exactly one of clusterSelector and kubeconfigSecretSelector',
                    },
                  ],
                  properties: {
                    clusterSelector: {
                      ...selector,
                      description: 'Selects Cluster API Clusters (cluster.x-k8s.io) in the namespace.',
                    },
                    kubeconfigSecretSelector: {
                      ...selector,
                      description:
                        'Selects kubeconfig Secrets (<cluster>-kubeconfig, key value) in the namespace, for fleets ' +
                        'without Cluster API.',
                    },
                    rollout: {
                      type: 'object',
                      description:
                        "How a new Flux version (the template's, or the newest its range matches) reaches the " +
                        'clusters: without it, all at once.',
                      properties: {
                        maxUnavailable: {
                          type: 'integer',
                          minimum: 1,
                          maximum: 10000,
                          description:
                            'At most this many clusters on the new version and not Ready with it at once; the ' +
                            'rollout stops while a cluster is Stalled on it.',
                        },
                      },
                    },
                    template: {
                      type: 'object',
                      description: 'The ClusterBootstrap made for each selected cluster.',
                      required: ['spec'],
                      properties: {
                        metadata: {
                          type: 'object',
                          description: 'Labels and annotations every ClusterBootstrap of the set gets.',
                          properties: {
                            labels: {
                              type: 'object',
                              description: 'Labels of each ClusterBootstrap.',
                              additionalProperties: { type: 'string' },
                            },
                            annotations: {
                              type: 'object',
                              description: 'Annotations of each ClusterBootstrap.',
                              additionalProperties: { type: 'string' },
                            },
                          },
                        },
                        spec: {
                          ...templateSpec,
                          description:
                            'A ClusterBootstrap spec; ${CLUSTER_NAME} stands for the cluster name. spec.target ' +
                            "defaults to the cluster's <cluster>-kubeconfig Secret, spec.git.path to " +
                            'clusters/<cluster>.',
                        },
                      },
                    },
                  },
                },
                status: {
                  type: 'object',
                  description: 'How the set stands: what it selects, and which of its clusters are Ready.',
                  properties: {
                    observedGeneration: {
                      type: 'integer',
                      format: 'int64',
                      description: 'The generation of the spec the status reports on.',
                    },
                    conditions: cbVersion.schema.openAPIV3Schema.properties.status.properties.conditions,
                    selected: { type: 'integer', description: 'clusters the selector matches' },
                    ready: { type: 'integer', description: 'of those, bootstrapped and Ready' },
                    waiting: {
                      type: 'array',
                      description:
                        'selected clusters not bootstrapped yet: control plane not initialized, or no kubeconfig ' +
                        'Secret',
                      items: { type: 'string' },
                    },
                    notReady: {
                      type: 'array',
                      description: 'ClusterBootstraps of the set that are not Ready, with why (at most 50)',
                      items: {
                        type: 'object',
                        properties: {
                          name: { type: 'string', description: 'The ClusterBootstrap (and cluster) name.' },
                          reason: { type: 'string', description: 'The reason of its Ready condition.' },
                          message: { type: 'string', description: 'The message of its Ready condition.' },
                        },
                      },
                    },
                    rollout: {
                      type: 'object',
                      description: 'How far the move of the clusters to a new Flux version is (spec.rollout).',
                      properties: {
                        version: { type: 'string', description: 'The Flux version being rolled out.' },
                        updated: { type: 'integer', description: 'Clusters given that version.' },
                        pending: { type: 'integer', description: 'Clusters not yet Ready with it.' },
                        blockedBy: {
                          type: 'array',
                          items: { type: 'string' },
                          description: 'Clusters holding the rollout up: not Ready, or Stalled, on the new version.',
                        },
                      },
                    },
                    sopsRecipients: {
                      type: 'array',
                      description:
                        "Each cluster's SOPS age public key, with spec.sops: what CI encrypts that cluster's files for",
                      items: {
                        type: 'object',
                        properties: {
                          name: { type: 'string', description: 'The ClusterBootstrap (and cluster) name.' },
                          recipient: { type: 'string', description: "The cluster's age public key (age1…)." },
                        },
                      },
                    },
                    conflicts: {
                      type: 'array',
                      items: { type: 'string' },
                      description: 'clusters another set (or a person) already bootstraps',
                    },
                    message: { type: 'string', description: "The Ready condition's message." },
                  },
                },
              },
            },
          },
        },
      ],
    },
  };
  // The template's git.url etc. stay required; target is optional in the template (it defaults per cluster).
  return (
    `# Generated by test/gen-set-crd.ts from fluxbootstrap.dev_clusterbootstraps.yaml. DO NOT ` +
    `EDIT.\n${yaml.dump(crd, { lineWidth: -1, noRefs: true })}`
  );
}

if (import.meta.main) writeFileSync(new URL('fluxbootstrap.dev_clusterbootstrapsets.yaml', root), setCRD());
