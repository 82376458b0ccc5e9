variable "name" {
  description = "Deployment name (resource prefix)."
  type        = string
  default     = "evpipe"
}

variable "primary_region" {
  description = "Primary region (the seeds: us-east-1)."
  type        = string
  default     = "us-east-1"
}

variable "dr_region" {
  description = "Disaster-recovery region (the seeds: eu-west-1; RPO 15 min, RTO 30 min)."
  type        = string
  default     = "eu-west-1"
}

variable "stage" {
  description = "Pipeline stage, 1-3 (see docs/operations.md#scaling-by-stage for when to move up)."
  type        = number
  default     = 3
}

variable "primary_certificate_arn" {
  description = "ACM certificate (in the primary region) for the public hostname."
  type        = string
}

variable "dr_certificate_arn" {
  description = "ACM certificate (in the DR region) for the public hostname."
  type        = string
}
