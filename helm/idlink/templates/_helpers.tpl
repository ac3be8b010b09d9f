{{- define "idlink.name" -}}{{ .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}

{{- define "idlink.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "idlink.labels" -}}
app.kubernetes.io/name: {{ include "idlink.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "idlink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idlink.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "idlink.image" -}}"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"{{- end -}}

{{- define "idlink.sled" -}}{{ eq .Values.store.backend "sled" }}{{- end -}}

{{/* The pod spec shared by the StatefulSet (sled) and the Deployment (redis). */}}
{{- define "idlink.podSpec" -}}
serviceAccountName: {{ include "idlink.fullname" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints: {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: idlinkd
    image: {{ include "idlink.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["--config", "/etc/idlink/idlink.toml"]
    ports:
      - name: grpc
        containerPort: 50051
        protocol: TCP
      - name: health
        containerPort: {{ .Values.health.port }}
        protocol: TCP
      {{- if .Values.metrics.enabled }}
      - name: metrics
        containerPort: {{ .Values.metrics.port }}
        protocol: TCP
      {{- end }}
    env:
      {{- if .Values.config.kinds.partnerUniversity.enabled }}
      - name: IDLINK_KINDS__PARTNER_UNIVERSITY__CLIENT_SECRET
        valueFrom:
          secretKeyRef:
            name: {{ required "existingSecret.name is required: client secrets never go in values" .Values.existingSecret.name }}
            key: {{ .Values.existingSecret.partnerUniversityClientSecretKey }}
      {{- end }}
      {{- if .Values.config.kinds.microsoftLearning.enabled }}
      - name: IDLINK_KINDS__MICROSOFT_LEARNING__CLIENT_SECRET
        valueFrom:
          secretKeyRef:
            name: {{ required "existingSecret.name is required: client secrets never go in values" .Values.existingSecret.name }}
            key: {{ .Values.existingSecret.microsoftLearningClientSecretKey }}
      {{- end }}
      {{- if and (ne (include "idlink.sled" .) "true") .Values.existingSecret.redisPasswordKey }}
      - name: IDLINK_STORE__REDIS_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ .Values.existingSecret.name }}
            key: {{ .Values.existingSecret.redisPasswordKey }}
      {{- end }}
      {{- if and (ne (include "idlink.sled" .) "true") .Values.existingSecret.redisSentinelPasswordKey }}
      - name: IDLINK_STORE__REDIS_SENTINEL_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ .Values.existingSecret.name }}
            key: {{ .Values.existingSecret.redisSentinelPasswordKey }}
      {{- end }}
      {{- with .Values.telemetry.otlpEndpoint }}
      - name: OTEL_EXPORTER_OTLP_ENDPOINT
        value: {{ . | quote }}
      {{- end }}
      {{- if .Values.telemetry.otlpCaConfigMap }}
      - name: IDLINK_TELEMETRY__OTLP_CA_FILE
        value: /etc/idlink-otlp-ca/ca.crt
      {{- end }}
      {{- with .Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    # On the health port. Readiness and startup follow the store and the identity providers
    # (""); liveness only asks whether the process answers, so an outage of Redis takes the
    # pods out of the Service and never restarts them.
    startupProbe:
      grpc: { port: {{ .Values.health.port }}, service: "" }
      periodSeconds: 2
      failureThreshold: 30
    readinessProbe:
      grpc: { port: {{ .Values.health.port }}, service: "" }
      periodSeconds: 5
    livenessProbe:
      grpc: { port: {{ .Values.health.port }}, service: liveness }
      periodSeconds: 10
      failureThreshold: 3
    lifecycle:
      preStop:
        sleep: { seconds: {{ .Values.preStopSeconds }} }
    securityContext: {{- toYaml .Values.securityContext | nindent 6 }}
    resources: {{- toYaml .Values.resources | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/idlink
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- if .Values.tls.existingSecret }}
      # Not subPath: a rotated Secret reaches a directory mount in place.
      - name: tls
        mountPath: /etc/idlink-tls
        readOnly: true
      {{- end }}
      {{- if .Values.telemetry.otlpCaConfigMap }}
      - name: otlp-ca
        mountPath: /etc/idlink-otlp-ca
        readOnly: true
      {{- end }}
      {{- if eq (include "idlink.sled" .) "true" }}
      - name: data
        mountPath: /var/lib/idlink
      {{- end }}
      {{- if .Values.config.catalogConfigMap }}
      - name: catalog
        mountPath: /etc/idlink-catalog
        readOnly: true
      {{- end }}
      {{- if and (ne (include "idlink.sled" .) "true") .Values.store.redis.caConfigMap }}
      - name: redis-ca
        mountPath: /etc/idlink-redis-ca
        readOnly: true
      {{- end }}
      {{- with .Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "idlink.fullname" . }}
  - name: tmp
    emptyDir: {}
  {{- with .Values.tls.existingSecret }}
  - name: tls
    secret:
      secretName: {{ . }}
  {{- end }}
  {{- with .Values.telemetry.otlpCaConfigMap }}
  - name: otlp-ca
    configMap:
      name: {{ . }}
  {{- end }}
  {{- with .Values.config.catalogConfigMap }}
  - name: catalog
    configMap:
      name: {{ . }}
  {{- end }}
  {{- if and (ne (include "idlink.sled" .) "true") .Values.store.redis.caConfigMap }}
  - name: redis-ca
    configMap:
      name: {{ .Values.store.redis.caConfigMap }}
  {{- end }}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A kind's association rules, only those set (0 is a value: no limit). */}}
{{- define "idlink.kindRules" -}}
{{- if hasKey . "onLinkedElsewhere" }}on_linked_elsewhere = {{ .onLinkedElsewhere | quote }}
{{ end -}}
{{- if hasKey . "associationsPerYear" }}associations_per_year = {{ .associationsPerYear | int }}
{{ end -}}
{{- if hasKey . "daysBetweenAssociations" }}days_between_associations = {{ .daysBetweenAssociations | int }}
{{ end -}}
{{- end -}}
