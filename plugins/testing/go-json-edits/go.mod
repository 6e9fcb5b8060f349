module jsonedits

go 1.24

require sluice.dev/sdk v0.0.0

replace sluice.dev/sdk => ../../sdk-go
