{{- define "huiyin.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "huiyin.labels" -}}
app.kubernetes.io/name: huiyin
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "huiyin.selector" -}}
app.kubernetes.io/name: huiyin
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The shared index and bucket, and their secrets: what the replicas and the migration share. */ -}}
{{- define "huiyin.storeEnv" -}}
- name: HUIYIN_DATABASE_URL
  value: {{ .Values.database.url | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.passwordSecret.name }}
      key: {{ .Values.database.passwordSecret.key }}
- name: HUIYIN_AUDIO_STORE
  value: {{ .Values.audioStore.url | quote }}
- name: HUIYIN_S3_ENDPOINT_URL
  value: {{ .Values.audioStore.endpointUrl | quote }}
- name: HUIYIN_S3_REGION
  value: {{ .Values.audioStore.region | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.audioStore.credentialsSecret.name }}
      key: {{ .Values.audioStore.credentialsSecret.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.audioStore.credentialsSecret.name }}
      key: {{ .Values.audioStore.credentialsSecret.secretAccessKeyKey }}
{{- end -}}

{{- define "huiyin.env" -}}
- name: HUIYIN_CONFIG
  value: /etc/huiyin/settings.yaml
- name: HUIYIN_DATA_DIR
  value: /data
- name: HUIYIN_HOST
  value: 0.0.0.0
{{ include "huiyin.storeEnv" . }}
{{- if .Values.adminTokenSecret.name }}
- name: HUIYIN_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.adminTokenSecret.name }}
      key: {{ .Values.adminTokenSecret.key }}
{{- end }}
{{- if .Values.urlSigningSecret.name }}
- name: HUIYIN_URL_SIGNING_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.urlSigningSecret.name }}
      key: {{ .Values.urlSigningSecret.key }}
{{- end }}
{{- if .Values.phrases }}
- name: HUIYIN_PHRASES
  value: {{ range $i, $name := keys .Values.phrases | sortAlpha }}{{ if $i }},{{ end }}/etc/huiyin/phrases/{{ $name }}{{ end }}
{{- end }}
{{- end -}}
