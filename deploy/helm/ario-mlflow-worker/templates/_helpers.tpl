{{- define "ario.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ario.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ario.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{/* The `feed` workload's pods (kafka mode, kafka.feed = workload): not behind the Service. */}}
{{- define "ario.feedSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: feed
{{- end -}}

{{/* What the worker pods run. */}}
{{- define "ario.args" -}}
{{- if eq .Values.mode "guard" -}}
["guard"]
{{- else if eq .Values.mode "poll" -}}
["run", "--source", "poll"]
{{- else if and (eq .Values.kafka.feed "inline") (eq .Values.kafka.format "cloudevents") -}}
["run", "--source", "poll,kafka"]
{{- else -}}
["run", "--source", "kafka"]
{{- end -}}
{{- end -}}

{{/* Whether the worker pods keep a store on a PersistentVolumeClaim: the poller's (poll mode,
kafka with an inline feed) and the guard's. Kafka consumers keep theirs in the state topic. */}}
{{- define "ario.persistent" -}}
{{- if or (ne .Values.mode "kafka") (and (eq .Values.kafka.feed "inline") (eq .Values.kafka.format "cloudevents")) -}}true{{- end -}}
{{- end -}}

{{- define "ario.validate" -}}
{{- if not (has .Values.mode (list "poll" "kafka" "guard")) -}}
{{- fail (printf "mode must be poll, kafka or guard, not %q" .Values.mode) -}}
{{- end -}}
{{- if and (eq .Values.mode "guard") (not (and .Values.config .Values.config.guard)) -}}
{{- fail "mode guard needs a policy: config.guard with tenant_id, agent_id and asset entries" -}}
{{- end -}}

{{- if not .Values.signingKeySecret -}}{{- fail "signingKeySecret is required (a Secret with key signing-key)" -}}{{- end -}}
{{- if not .Values.walletSecret -}}{{- fail "walletSecret is required (a Secret with key wallet.json)" -}}{{- end -}}
{{- if not (has .Values.kafka.feed (list "workload" "inline" "none")) -}}
{{- fail (printf "kafka.feed must be workload, inline or none, not %q" .Values.kafka.feed) -}}
{{- end -}}
{{- if and (eq .Values.mode "kafka") (not .Values.kafka.brokers) -}}{{- fail "kafka.brokers is required in kafka mode" -}}{{- end -}}
{{- if not (has .Values.kafka.format (list "cloudevents" "debezium")) -}}
{{- fail (printf "kafka.format must be cloudevents or debezium, not %q" .Values.kafka.format) -}}
{{- end -}}
{{- if and (eq .Values.kafka.format "debezium") (eq .Values.kafka.topic .Values.kafka.eventsTopic) -}}
{{- fail "kafka.format debezium: set kafka.topic to the Debezium topics (comma-separated), kafka.eventsTopic is where the change events go" -}}
{{- end -}}
{{- end -}}

{{/* The pod template both workloads share. */}}
{{- define "ario.pod" -}}
metadata:
  labels:
    {{- include "ario.selector" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ if .Values.serviceAccount.create }}{{ include "ario.fullname" . }}{{ else }}{{ .Values.serviceAccount.name | default "default" }}{{ end }}
  # The worker never talks to the Kubernetes API: no token in the pod.
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: 40
  containers:
    - name: worker
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: {{ include "ario.args" . }}
      ports:
        - name: http
          containerPort: 9847
          protocol: TCP
      env:
        - name: ARIO_MLFLOW_CONFIG
          value: /etc/ario-mlflow-worker/config.toml
        - name: ARIO_MLFLOW_LISTEN
          value: "0.0.0.0:9847"
        - name: ARIO_MLFLOW_LOG_FORMAT
          value: json
        - name: ARIO_MLFLOW_STATE_DIR
          value: /var/lib/ario-mlflow-worker/state
        - name: HOME
          value: /var/lib/ario-mlflow-worker
        - name: MLFLOW_TRACKING_URI
          value: {{ .Values.mlflow.trackingUri | quote }}
        - name: ARIO_MLFLOW_UPLOAD_URL
          value: {{ .Values.arweave.uploadUrl | quote }}
        - name: ARIO_MLFLOW_GATEWAY_HOST
          value: {{ .Values.arweave.gatewayHost | quote }}
        - name: ARIO_MLFLOW_ARWEAVE_WALLET
          value: /etc/ario-mlflow-worker/wallet/wallet.json
        - name: ARIO_MLFLOW_SIGNING_KEY
          valueFrom:
            secretKeyRef:
              name: {{ .Values.signingKeySecret }}
              key: signing-key
        {{- if .Values.webhookSecret }}
        - name: ARIO_MLFLOW_WEBHOOK_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ .Values.webhookSecret }}
              key: webhook-secret
        {{- end }}
        {{- if .Values.managementSecret }}
        - name: ARIO_MLFLOW_MANAGEMENT_SECRET_FILE
          value: /etc/ario-mlflow-worker/management/management-secret
        {{- end }}
        {{- if eq .Values.mode "kafka" }}
        # Static membership and a stable transactional id: the pod's own (stable) name.
        - name: ARIO_MLFLOW_KAFKA_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: ARIO_MLFLOW_KAFKA_BROKERS
          value: {{ .Values.kafka.brokers | quote }}
        - name: ARIO_MLFLOW_KAFKA_TOPIC
          value: {{ .Values.kafka.topic | quote }}
        - name: ARIO_MLFLOW_KAFKA_GROUP
          value: {{ .Values.kafka.group | quote }}
        {{- if eq .Values.kafka.format "debezium" }}
        - name: ARIO_MLFLOW_KAFKA_FORMAT
          value: debezium
        - name: ARIO_MLFLOW_KAFKA_EVENTS_TOPIC
          value: {{ .Values.kafka.eventsTopic | quote }}
        {{- end }}
        {{- if .Values.kafka.saslSecret }}
        - name: ARIO_MLFLOW_KAFKA_SASL_USERNAME
          valueFrom:
            secretKeyRef:
              name: {{ .Values.kafka.saslSecret }}
              key: username
        - name: ARIO_MLFLOW_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ .Values.kafka.saslSecret }}
              key: password
        {{- end }}
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if .Values.mlflow.credentialsSecret }}
      envFrom:
        - secretRef:
            name: {{ .Values.mlflow.credentialsSecret }}
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: state
          mountPath: /var/lib/ario-mlflow-worker
        - name: config
          mountPath: /etc/ario-mlflow-worker/config.toml
          subPath: config.toml
          readOnly: true
        - name: wallet
          mountPath: /etc/ario-mlflow-worker/wallet
          readOnly: true
        {{- if .Values.managementSecret }}
        - name: management
          mountPath: /etc/ario-mlflow-worker/management
          readOnly: true
        {{- end }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "ario.fullname" . }}
    - name: wallet
      secret:
        secretName: {{ .Values.walletSecret }}
        defaultMode: 0400
    {{- if .Values.managementSecret }}
    - name: management
      secret:
        secretName: {{ .Values.managementSecret }}
        defaultMode: 0400
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if not (include "ario.persistent" .) }}
    - name: state
      emptyDir: {}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
