{{/* The chart's name. */}}
{{- define "proglog.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's objects' name: the release name when it holds the chart's
name, else <release>-<chart>. The StatefulSet's pods are <fullname>-<n>.
*/}}
{{- define "proglog.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "proglog.headless" -}}
{{- include "proglog.fullname" . }}-headless
{{- end -}}

{{- define "proglog.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "proglog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "proglog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proglog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "proglog.tlsSecret" -}}
{{- default (printf "%s-tls" (include "proglog.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{- define "proglog.gossipSecret" -}}
{{- default (printf "%s-gossip" (include "proglog.fullname" .)) .Values.gossip.existingSecret -}}
{{- end -}}

{{- define "proglog.aclConfigMap" -}}
{{- default (printf "%s-acl" (include "proglog.fullname" .)) .Values.acl.existingConfigMap -}}
{{- end -}}

{{/* The DNS suffix of the pods' stable names: <headless>.<ns>.svc.<domain>. */}}
{{- define "proglog.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "proglog.headless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The client Service's name in DNS; the probes check the certificate for it. */}}
{{- define "proglog.serviceDNS" -}}
{{- printf "%s.%s.svc.%s" (include "proglog.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/*
The PodDisruptionBudget's maxUnavailable: replicas minus a quorum, so a
drain never takes the Raft groups below a majority.
*/}}
{{- define "proglog.maxUnavailable" -}}
{{- if ne (toString .Values.podDisruptionBudget.maxUnavailable) "" -}}
{{- .Values.podDisruptionBudget.maxUnavailable -}}
{{- else -}}
{{- $replicas := int .Values.replicas -}}
{{- sub $replicas (add (div $replicas 2) 1) -}}
{{- end -}}
{{- end -}}

{{/*
Whether the cluster has formed, so pod 0 joins the others like every pod
rather than starting a cluster of its own: cluster.bootstrapped, or an
upgrade of a release whose StatefulSet exists (lookup finds nothing under
helm template).
*/}}
{{- define "proglog.bootstrapped" -}}
{{- if or .Values.cluster.bootstrapped (lookup "apps/v1" "StatefulSet" .Release.Namespace (include "proglog.fullname" .)) -}}
true
{{- end -}}
{{- end -}}
