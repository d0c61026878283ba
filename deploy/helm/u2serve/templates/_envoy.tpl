{{/* Pieces of the Envoy configuration (envoy-configmap.yaml). */}}

{{/*
Retries of gRPC calls a pod refused (UNAVAILABLE: draining; RESOURCE_EXHAUSTED is not retried,
it means the whole deployment is full) or never reached, each on a host not tried yet. On a
ring the predicate walks on point by point: "attempts" bounds that walk.
*/}}
{{- define "u2serve.envoy.retryGrpc" -}}
retry_on: unavailable,connect-failure,reset,refused-stream
num_retries: {{ .e.numRetries }}
retry_host_predicate:
- name: envoy.retry_host_predicates.previous_hosts
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
host_selection_retry_max_attempts: {{ .attempts }}
retry_back_off: { base_interval: 0.02s, max_interval: 0.2s }
{{- end }}

{{/* The same for HTTP: 503 is what a draining pod answers. */}}
{{- define "u2serve.envoy.retryHttp" -}}
retry_on: connect-failure,reset,retriable-status-codes
retriable_status_codes: [503]
num_retries: {{ .e.numRetries }}
retry_host_predicate:
- name: envoy.retry_host_predicates.previous_hosts
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
host_selection_retry_max_attempts: {{ .attempts }}
retry_back_off: { base_interval: 0.02s, max_interval: 0.2s }
{{- end }}

{{/*
One upstream cluster over a headless Service: strict DNS makes one endpoint per pod IP the name
resolves to. Health checks always use the HTTP port (GET on /v2/health/ready or /live).
*/}}
{{- define "u2serve.envoy.cluster" -}}
- name: {{ .name }}
  # Strict DNS (the DNS cluster extension; Cluster.type STRICT_DNS with dns_refresh_rate is
  # deprecated): every address the name resolves to is an endpoint, re-resolved regularly.
  cluster_type:
    name: envoy.cluster.dns
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster
      dns_refresh_rate: {{ .e.dnsRefreshRate }}
      dns_lookup_family: V4_PREFERRED
      all_addresses_in_single_endpoint: false
  lb_policy: {{ .lb }}
  {{- if eq .lb "RING_HASH" }}
  ring_hash_lb_config:
    minimum_ring_size: {{ int64 .e.minimumRingSize }}
  {{- end }}
  connect_timeout: 1s
  common_lb_config:
    healthy_panic_threshold: { value: 0 }   # never send to pods that failed their check
    # A pod that DNS has just listed (a new or restarted one) gets traffic, and a place on the
    # ring, only once it has passed a health check.
    ignore_new_hosts_until_first_hc: true
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config:
        {{- if .h2 }}
        http2_protocol_options:
          max_concurrent_streams: 1024
        {{- else }}
        http_protocol_options: {}
        {{- end }}
      common_http_protocol_options:
        idle_timeout: {{ if .h2 }}{{ .e.streamIdleTimeout }}{{ else }}60s{{ end }}
  circuit_breakers:
    thresholds:
    - { max_connections: 10000, max_pending_requests: 10000, max_requests: 10000, max_retries: 1000 }
  health_checks:
  - timeout: {{ .e.healthCheck.timeout }}
    interval: {{ .e.healthCheck.interval }}
    no_traffic_interval: {{ .e.healthCheck.interval }}
    unhealthy_threshold: {{ .e.healthCheck.unhealthyThreshold }}
    healthy_threshold: {{ .e.healthCheck.healthyThreshold }}
    http_health_check:
      path: {{ .health }}
      codec_client_type: HTTP1
  load_assignment:
    cluster_name: {{ .name }}
    endpoints:
    - lb_endpoints:
      - endpoint:
          address: { socket_address: { address: {{ .host }}, port_value: {{ .port }} } }
          health_check_config: { port_value: {{ .checkPort }} }
{{- end }}
