! Fortran OpenMP (gfortran -O2 -g -fopenmp, run with OMP_NUM_THREADS=1 so that no
! thread spins in a barrier): the region in the module procedure grid::relax runs 3x
! the sweeps of the region in the main program: self 75% / 25%, each in its outlined
! function (`__grid_MOD_relax._omp_fn.0`: `grid::relax._omp_fn.0`).
module grid
contains
  subroutine relax(a, n, iters)
    integer, intent(in) :: n, iters
    real(8), intent(inout) :: a(n)
    integer :: i, k
    do k = 1, iters
      !$omp parallel do
      do i = 2, n - 1
        a(i) = 0.5d0 * a(i) + 0.25d0 * (a(i-1) + a(i+1))
      end do
      !$omp end parallel do
    end do
  end subroutine
end module

program regions
  use grid
  real(8), allocatable :: a(:)
  integer :: i, k, iters
  character(len=16) :: arg
  call get_command_argument(1, arg)
  read (arg, *) iters
  allocate(a(100000)); a = 1.0d0
  call relax(a, 100000, 3 * iters)
  do k = 1, iters
    !$omp parallel do
    do i = 2, 99999
      a(i) = 0.5d0 * a(i) + 0.25d0 * (a(i+1) + a(i-1))
    end do
    !$omp end parallel do
  end do
  print *, sum(a)
end program
