output "primary" {
  description = "Primary region outputs (app_settings, secret ARNs, target group, IRSA role, ...)."
  value       = module.primary
  sensitive   = true
}

output "dr" {
  description = "DR region outputs."
  value       = module.dr
  sensitive   = true
}

output "primary_app_settings" {
  description = "evpipe-config values for the primary region."
  value       = module.primary.app_settings
}

output "dr_app_settings" {
  description = "evpipe-config values for the DR region."
  value       = module.dr.app_settings
}
